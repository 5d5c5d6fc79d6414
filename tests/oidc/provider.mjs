// The OIDC provider the web login tests sign in against: node-oidc-provider
// (OpenID Certified), so PKCE, the code's single use, nonce and the ID token are
// checked by an implementation that is not ours. Started by tests/oidc_provider.py.
//
// Environment: OIDC_PORT (0 = any free port), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
// OIDC_REDIRECT_URIS (comma-separated). Prints "listening <issuer>" once it is up.
// Accounts are whatever login is typed at its sign-in form; their claims are set
// with PUT /test/accounts/<login> {json claims} (a test-only route of this script).
import http from 'node:http';
import Provider from 'oidc-provider';

const accounts = new Map();
const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.env.OIDC_PORT || 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID,
    client_secret: process.env.OIDC_CLIENT_SECRET,
    redirect_uris: process.env.OIDC_REDIRECT_URIS.split(','),
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], tenantops: ['roles', 'tenant'] },
  // The claims of the granted scopes go into the ID token (tenantops reads them there).
  conformIdTokenClaims: false,
  cookies: { keys: ['tenantops-test-cookie-key'] },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, ...(accounts.get(id) || {}) }),
  }),
});
provider.proxy = false;
provider.use(async (ctx, next) => {
  const match = /^\/test\/accounts\/([^/]+)$/.exec(ctx.path);
  if (match && ctx.method === 'PUT') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    accounts.set(decodeURIComponent(match[1]), JSON.parse(Buffer.concat(chunks).toString() || '{}'));
    ctx.status = 204;
    return;
  }
  await next();
});
server.on('request', provider.callback());
console.log(`listening ${issuer}`);
