#!/bin/bash
# usage: dep_delta.sh 'DEP LINE for keyward-server [dependencies]' LABEL
# Adds one dependency to a copy of the Keyward workspace, re-resolves (offline where possible,
# keeping every existing Cargo.lock entry), and lists the packages that are new.
set -e
cd /tmp/oidc-research/ws
cp Cargo.lock.orig Cargo.lock
cp crates/keyward-server/Cargo.toml /tmp/ks.toml.bak
sed -i "/^\[dependencies\]/a $1" crates/keyward-server/Cargo.toml
cargo tree -p keyward-server -e normal -q > /dev/null 2>/tmp/oidc-research/dep_delta.err || { cat /tmp/oidc-research/dep_delta.err; cp /tmp/ks.toml.bak crates/keyward-server/Cargo.toml; exit 1; }
pk() { grep -A1 '^name = ' "$1" | grep -v '^--' | paste - - | sed 's/name = "\(.*\)"\tversion = "\(.*\)"/\1 \2/' | sort; }
pk Cargo.lock.orig > /tmp/before.txt; pk Cargo.lock > /tmp/after.txt
new=$(comm -13 /tmp/before.txt /tmp/after.txt)
oldnames=$(cut -d' ' -f1 /tmp/before.txt | sort -u)
echo "== $2: $(echo "$new" | grep -c . ) new package versions"
echo "$new" | while read n v; do [ -z "$n" ] && continue; if echo "$oldnames" | grep -qx "$n"; then echo "  $n $v   (DUPLICATE: workspace has $(grep "^$n " /tmp/before.txt | cut -d' ' -f2 | tr '\n' ' '))"; else echo "  $n $v"; fi; done
# what actually gets compiled on Linux for the whole workspace (normal+build deps)
lt() { cargo tree --workspace -e normal,build --target x86_64-unknown-linux-gnu --prefix none -q 2>/dev/null | sed 's/ (.*//; s/ (\*)//' | awk '{print $1" "$2}' | sort -u; }
cp Cargo.lock /tmp/lock.new; cp Cargo.lock.orig Cargo.lock; cp /tmp/ks.toml.bak /tmp/ks.cur; cp crates/keyward-server/Cargo.toml /tmp/ks.with
cp /tmp/ks.toml.bak crates/keyward-server/Cargo.toml; lt > /tmp/lt_before.txt
cp /tmp/ks.with crates/keyward-server/Cargo.toml; cp /tmp/lock.new Cargo.lock; lt > /tmp/lt_after.txt
echo "  compiled on linux (workspace, normal+build): $(wc -l < /tmp/lt_before.txt) -> $(wc -l < /tmp/lt_after.txt) packages; new ones:"
comm -13 /tmp/lt_before.txt /tmp/lt_after.txt | tr '\n' ',' | fold -w 110 | sed 's/^/    /'; echo
cargo tree -p keyward-server -e normal -i ring -q 2>/dev/null | head -3 | sed 's/^/  ring users: /' || true
for c in aws-lc-sys aws-lc-rs openssl-sys cc; do grep -q "name = \"$c\"" Cargo.lock && echo "  has $c: yes ($(grep -A1 "name = \"$c\"" Cargo.lock | grep version | tr '\n' ' '))" || echo "  has $c: no"; done
cp /tmp/ks.toml.bak crates/keyward-server/Cargo.toml
cp Cargo.lock /tmp/oidc-research/Cargo.lock.$(echo "$2" | tr -c 'a-zA-Z0-9\n' '_')
cp Cargo.lock.orig Cargo.lock
