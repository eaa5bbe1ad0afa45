// The certified OpenID Provider (panva/oidc-provider) that oidcauth's interop
// tests log in against. integration/interop's TestMain starts it with Node;
// nothing here is meant for anything but those tests.
//
// Configuration, all from the environment:
//
//   OP_ISSUER               the issuer URL, e.g. http://localhost:PORT (required)
//   OP_LISTEN_FD            listen on this inherited file descriptor (the tests
//                           pass their own loopback listener, so no port race)
//   OP_PORT                 or listen on 127.0.0.1:OP_PORT
//   OP_CLIENTS              JSON array of client metadata (client_id, secret,
//                           redirect_uris, post_logout_redirect_uris,
//                           backchannel_logout_uri, grant_types, ...)
//   OP_USERS                JSON object: login -> claims (email, name, ...)
//   OP_REGISTRATION_TOKEN   when set, dynamic client registration at /reg is
//                           on, with this initial access token (tests add
//                           clients for extra app instances with it)
//   OP_ACCESS_TOKEN_TTL     access-token lifetime in seconds (default 3600)
//   OP_ID_TOKEN_TTL         ID-token lifetime in seconds (default 3600)
//   OP_REFRESH_ALWAYS       "1": issue a refresh token to every client allowed
//                           the refresh_token grant, even without
//                           offline_access + prompt=consent
//
// It logs one line per interesting provider event on stdout, and prints
// "ready <issuer>" once it listens.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const env = process.env;

function fail(msg) {
  console.error(`op: ${msg}`);
  process.exit(2);
}

function seconds(name, def) {
  if (!env[name]) return def;
  const n = Number(env[name]);
  if (!Number.isInteger(n) || n <= 0) fail(`${name}=${env[name]} is not a positive number of seconds`);
  return n;
}

const issuer = env.OP_ISSUER || fail('OP_ISSUER is required');
let clients;
try {
  clients = JSON.parse(env.OP_CLIENTS || '[]');
} catch (err) {
  fail(`OP_CLIENTS is not JSON: ${err.message}`);
}
const accessTokenTTL = seconds('OP_ACCESS_TOKEN_TTL', 3600);
const idTokenTTL = seconds('OP_ID_TOKEN_TTL', 3600);
const registrationToken = env.OP_REGISTRATION_TOKEN || '';
const refreshAlways = env.OP_REFRESH_ALWAYS === '1';

// The users, as OP_USERS: a JSON object from login to claims (the tests
// keep the one list, and compare what the app shows with it).
// devInteractions' login form takes any login and password: a login not
// listed gets a made-up account.
let USERS;
try {
  USERS = JSON.parse(env.OP_USERS || '{}');
} catch (err) {
  fail(`OP_USERS is not JSON: ${err.message}`);
}

function claimsFor(id) {
  return {
    sub: id,
    ...(USERS[id] ?? {
      email: `${id}@example.net`,
      email_verified: false,
      name: id,
      preferred_username: id,
    }),
  };
}

// A fresh signing key per run; the RP finds it through the JWKS.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `rs256-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

// Pages of our own instead of the defaults, which load a web font from the
// internet (the tests' browser must only talk to loopback).
const page = (title, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}
button{font:inherit;padding:.4rem 1rem;margin:.25rem 0;width:100%}</style></head>
<body><h1>${title}</h1>${body}</body></html>`;

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const configuration = {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  // PKCE for every client, not only public ones.
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
  },
  // Put the scopes' claims (email, name, ...) in the ID token as well, not
  // only in userinfo.
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return claimsFor(id);
      },
    };
  },
  ...(refreshAlways && {
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
  }),
  ttl: {
    AccessToken: accessTokenTTL,
    IdToken: idTokenTTL,
    Grant: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    RefreshToken: 14 * 24 * 3600,
    ClientCredentials: 600,
  },
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out', `<p>Do you want to sign out from ${escape(ctx.host)}?</p>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout" id="logout-yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm" id="logout-no">No, stay signed in</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p id="signed-out">Your sign-out was successful.</p>');
      },
    },
    backchannelLogout: { enabled: true },
    registration: registrationToken
      ? { enabled: true, initialAccessToken: registrationToken }
      : { enabled: false },
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<pre id="op-error">${escape(JSON.stringify(out, null, 2))}</pre>`);
  },
  // The SSRF guard refuses to post back-channel logouts to loopback, where
  // the app under test listens: drop its dispatcher.
  fetch(url, options) {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
};

const provider = new Provider(issuer, configuration);

// The devInteractions pages still @import a web font: forbid fonts and
// off-site styles so that the browser never tries to reach the internet.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.type === 'text/html' && !ctx.response.get('Content-Security-Policy')) {
    ctx.set('Content-Security-Policy', "style-src 'self' 'unsafe-inline'; font-src 'none'; img-src 'self' data:");
  }
});

for (const ev of [
  'authorization.success', 'authorization.error', 'grant.success', 'grant.error',
  'end_session.success', 'end_session.error', 'backchannel.success', 'backchannel.error',
  'userinfo.error', 'registration_create.success', 'registration_create.error',
  'interaction.ended', 'server_error', 'jwks.error', 'grant.revoked', 'session.destroyed',
  'access_token.saved', 'refresh_token.saved', 'refresh_token.consumed', 'refresh_token.destroyed',
]) {
  provider.on(ev, (...args) => {
    const parts = new Set(args.map((a) => {
      if (a instanceof Error) return `${a.name}: ${a.message}${a.error_description ? ` (${a.error_description})` : ''}`;
      if (a?.oidc?.client?.clientId) return `client=${a.oidc.client.clientId}`;
      if (a?.clientId) return `client=${a.clientId}`;
      return '';
    }).filter(Boolean));
    console.log(`op: event ${ev} ${[...parts].join(' ')}`);
  });
}

const server = createServer(provider.callback());
const listenOn = env.OP_LISTEN_FD
  ? { fd: Number(env.OP_LISTEN_FD) }
  : { port: Number(env.OP_PORT || fail('OP_LISTEN_FD or OP_PORT is required')), host: '127.0.0.1' };
server.listen(listenOn, () => {
  console.log(`ready ${issuer}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    console.log(`op: ${sig}, stopping`);
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
