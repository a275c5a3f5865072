// Minimal oidc-provider (npm, v9) for Keyward's OIDC tests. ESM, Node >= 20.
//
//   node provider.mjs            # env: OP_PORT (default 0 = ephemeral), RP_PORT (redirect host port),
//                                #      ID_TOKEN_ALG (RS256|ES256, default RS256),
//                                #      OP_HOST / RP_HOST (issuer / redirect host, default 127.0.0.1)
// Prints one line `READY {"issuer":...,"port":...}` on stdout when listening.
//
// Test-only control endpoints (never in a real deployment):
//   POST /__test/rotate            new signing key first, old key kept in JWKS (overlap)
//   POST /__test/rotate?retire=1   new signing key, all old keys dropped from JWKS
//
// Key rotation works by building a *new* Provider with the new JWKS and swapping the
// request handler; both instances use one shared in-memory adapter store, so sessions, grants,
// codes and interactions survive the swap (cookie keys are the same too).
import http from 'node:http';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
// One in-memory store shared by every Provider instance we build (v9.13 gives each instance its
// own store by default, which would drop sessions/codes on a key-rotation swap). Deep import is
// possible because the package has no "exports" map.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const sharedAdapter = createMemoryAdapter(0);

const OP_PORT = Number(process.env.OP_PORT ?? 0);
const RP_PORT = Number(process.env.RP_PORT ?? 8089);
const ID_TOKEN_ALG = process.env.ID_TOKEN_ALG ?? 'RS256';
// issuer host: 'localhost' puts the OP on a different *site* than an RP on 127.0.0.1 (SameSite tests)
const OP_HOST = process.env.OP_HOST ?? '127.0.0.1';
const RP_HOST = process.env.RP_HOST ?? '127.0.0.1';

const USERS = {
  alice: { email: 'alice@example.test', email_verified: true, groups: ['keyward-admins', 'eng'] },
  bob: { email: 'bob@example.test', email_verified: true, groups: ['keyward-readers'] },
  carol: { email: 'carol@example.test', email_verified: false, groups: [] },
};

function newKey(alg) {
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

// Signing key selection in oidc-provider = first key in `jwks.keys` that fits the alg.
let keys = [newKey('RS256'), newKey('ES256')];

let server;
let issuer;

function configuration() {
  return {
    clients: [
      {
        client_id: 'keyward-console',
        client_secret: 'console-secret-0123456789abcdef',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [`http://${RP_HOST}:${RP_PORT}/ui/oidc/callback`],
        post_logout_redirect_uris: [`http://${RP_HOST}:${RP_PORT}/ui/`],
        id_token_signed_response_alg: ID_TOKEN_ALG,
      },
      {
        // "workload" client: client_credentials -> JWT access token (resource indicator)
        client_id: 'ci-runner',
        client_secret: 'ci-runner-secret-0123456789abcdef',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    // PKCE: v9 only supports S256; make it mandatory for every client, not only public ones.
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'groups', 'offline_access', 'keyward:use'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // Default (true) would put scope-requested claims only in /userinfo, not in the ID token.
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      const u = USERS[sub];
      if (!u) return undefined;
      return { accountId: sub, async claims() { return { sub, ...u }; } };
    },
    adapter: sharedAdapter,
    cookies: { keys: ['test-cookie-key-0123456789abcdef'] },
    jwks: { keys },
    features: {
      devInteractions: { enabled: true }, // built-in login (any password) + consent pages
      rpInitiatedLogout: {
        enabled: true,
        // default page @imports Google Fonts; keep this one self-contained
        async logoutSource(ctx, form) {
          ctx.body = `<!DOCTYPE html><html><head><title>Logout</title></head><body>${form}
<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
</body></html>`;
        },
      },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => 'https://keyward.test',
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, resource) {
          if (resource !== 'https://keyward.test') throw new errors.InvalidTarget();
          return {
            scope: 'keyward:use',
            audience: 'https://keyward.test',
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // make the client_credentials JWT look like a platform token (GitHub-ish claims)
    async extraTokenClaims(_ctx, token) {
      if (token.clientId === 'ci-runner') {
        return { repository: 'acme/app', ref: 'refs/heads/main', repository_owner: 'acme' };
      }
      return undefined;
    },
    ttl: { AccessToken: 300, AuthorizationCode: 60, IdToken: 300, Interaction: 600, Session: 3600, Grant: 3600, ClientCredentials: 300 },
  };
}

function build() {
  const p = new Provider(issuer, configuration());
  p.proxy = false;
  p.on('server_error', (_ctx, err) => console.error('server_error', err));
  return p;
}

let provider;
let handler;

async function control(req, res) {
  const url = new URL(req.url, issuer);
  if (req.method === 'POST' && url.pathname === '/__test/rotate') {
    const fresh = [newKey('RS256'), newKey('ES256')];
    keys = url.searchParams.get('retire') ? fresh : [...fresh, ...keys];
    provider = build();
    handler = provider.callback();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kids: keys.map((k) => k.kid) }));
    return true;
  }
  return false;
}

server = http.createServer(async (req, res) => {
  if (req.url.startsWith('/__test/')) {
    if (await control(req, res)) return;
    res.writeHead(404).end();
    return;
  }
  // The devInteractions pages @import Google Fonts; this CSP stops the browser from even trying
  // (no form-action here: the OP's forms redirect to the RP, another origin).
  res.setHeader('content-security-policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:");
  handler(req, res);
});

server.listen(OP_PORT, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://${OP_HOST}:${port}`;
  provider = build();
  handler = provider.callback();
  process.stdout.write(`READY ${JSON.stringify({ issuer, port })}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
