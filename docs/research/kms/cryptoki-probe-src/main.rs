//! Probe SoftHSM2 through cryptoki: find a token by label, log in, find an AES key by label,
//! then seal a 32-byte secret with CKM_AES_GCM, CKM_AES_KEY_WRAP and CKM_AES_KEY_WRAP_PAD.
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

fn find_kek(s: &Session, label: &str) -> cryptoki::error::Result<Vec<ObjectHandle>> {
    s.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let module = std::env::var("PKCS11_MODULE").unwrap_or("/usr/lib/softhsm/libsofthsm2.so".into());
    let t = Instant::now();
    let pkcs11 = Pkcs11::new(&module)?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    println!("load+initialize: {:?}", t.elapsed());
    let info = pkcs11.get_library_info()?;
    println!("library: {:?} {:?}", info.manufacturer_id(), info.library_version());

    let mut slot = None;
    for s in pkcs11.get_slots_with_token()? {
        let ti = pkcs11.get_token_info(s)?;
        println!("slot {} label={:?} initialized={}", s.id(), ti.label(), ti.token_initialized());
        if ti.label() == "keyward" {
            slot = Some(s);
        }
    }
    let slot = slot.ok_or("no token labelled keyward")?;

    // Wrong PIN first, to see the error.
    let s = pkcs11.open_ro_session(slot)?;
    match s.login(UserType::User, Some(&AuthPin::new("0000".into()))) {
        Ok(()) => println!("wrong pin accepted?!"),
        Err(e) => println!("wrong pin -> {e} / {e:?}"),
    }
    let t = Instant::now();
    s.login(UserType::User, Some(&AuthPin::new("1234".into())))?;
    println!("login: {:?}", t.elapsed());
    println!("unknown label -> {:?}", find_kek(&s, "nope")?);
    let keys = find_kek(&s, "kek")?;
    println!("kek handles: {keys:?}");
    let kek = keys[0];
    let attrs = s.get_attributes(kek, &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::ValueLen, AttributeType::Id])?;
    println!("kek attrs: {attrs:?}");
    match s.get_attributes(kek, &[AttributeType::Value]) {
        Ok(v) => println!("read CKA_VALUE of kek -> {v:?} (empty list = unavailable)"),
        Err(e) => println!("read CKA_VALUE of kek -> {e:?}"),
    }

    let secret = [7u8; 32];
    // --- AES-GCM via C_Encrypt
    let aad = b"keyward/kek/v1:k1";
    let mut iv = [0u8; 12];
    s.generate_random_slice(&mut iv)?;
    let t = Instant::now();
    let ct = s.encrypt(&Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?), kek, &secret)?;
    println!("GCM encrypt: {} bytes (ct||tag) in {:?}", ct.len(), t.elapsed());
    let t = Instant::now();
    let pt = s.decrypt(&Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?), kek, &ct)?;
    println!("GCM decrypt ok={} in {:?}", pt == secret, t.elapsed());
    match s.decrypt(&Mechanism::AesGcm(GcmParams::new(&mut iv, b"other aad", 128.into())?), kek, &ct) {
        Ok(_) => println!("GCM wrong aad accepted?!"),
        Err(e) => println!("GCM wrong aad -> {e:?}"),
    }
    let mut bad = ct.clone();
    bad[0] ^= 1;
    match s.decrypt(&Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?), kek, &bad) {
        Ok(_) => println!("GCM tampered accepted?!"),
        Err(e) => println!("GCM tampered -> {e:?}"),
    }
    // Can the token generate the IV itself? (SoftHSM ignores / requires caller IV)
    // --- AES key wrap as C_Encrypt (expected: not allowed, mechanism is wrap/unwrap only)
    for (name, m) in [("AES_KEY_WRAP", Mechanism::AesKeyWrap), ("AES_KEY_WRAP_PAD", Mechanism::AesKeyWrapPad)] {
        match s.encrypt(&m, kek, &secret) {
            Ok(c) => println!("C_Encrypt {name}: {} bytes", c.len()),
            Err(e) => println!("C_Encrypt {name} -> {e:?}"),
        }
        // Wrap route: import the secret as a session key object, wrap it, unwrap it, read it back.
        let obj = s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Value(secret.to_vec()),
        ])?;
        let t = Instant::now();
        let wrapped = s.wrap_key(&m, kek, obj)?;
        println!("C_WrapKey {name}: {} bytes in {:?}", wrapped.len(), t.elapsed());
        s.destroy_object(obj)?;
        let t = Instant::now();
        let h = s.unwrap_key(&m, kek, &wrapped, &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ])?;
        let v = s.get_attributes(h, &[AttributeType::Value])?;
        let ok = matches!(v.first(), Some(Attribute::Value(b)) if b.as_slice() == secret);
        println!("C_UnwrapKey {name} + read CKA_VALUE ok={ok} in {:?}", t.elapsed());
        s.destroy_object(h)?;
        let mut bad = wrapped.clone();
        bad[5] ^= 1;
        match s.unwrap_key(&m, kek, &bad, &[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::GENERIC_SECRET), Attribute::Token(false), Attribute::Sensitive(false), Attribute::Extractable(true)]) {
            Ok(_) => println!("{name} tampered unwrap accepted?!"),
            Err(e) => println!("{name} tampered unwrap -> {e:?}"),
        }
    }
    s.logout()?;
    match s.encrypt(&Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?), kek, &secret) {
        Ok(_) => println!("encrypt after logout accepted?!"),
        Err(e) => println!("encrypt after logout -> {e:?}"),
    }
    Ok(())
}
