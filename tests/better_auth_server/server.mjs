// A real Better Auth server (the npm package, pinned in package.json) for mita's tests.
//
// Better Auth as an app would set it up: email and password sign-in, the jwt() and bearer()
// plugins, every other setting at its default, on a PostgreSQL database of its own. The tables
// are made at start-up by Better Auth's own migration API, before the server listens.
//
// Environment:
//   DATABASE_URL         postgresql://... (an empty database, or one this server made before)
//   BETTER_AUTH_URL      the public base URL (`baseURL`): the JWTs' iss and aud, and with
//                        https:// the cookie is named __Secure-better-auth.session_token
//   BETTER_AUTH_SECRET   signs the session cookie and encrypts the stored signing keys
//   PORT                 the port to listen on, on 127.0.0.1 only
//
// Control routes, outside Better Auth's base path, so that a test can make the server misbehave
// (a POST, answered 204); each takes an optional `?path=` prefix to limit it to some routes:
//   /__control/fail        Better Auth's routes answer 500
//   /__control/hang        they read the request and never answer
//   /__control/normal      back to normal; requests left hanging are cut off (socket closed)
//   /__control/rotate-key  a new JWT signing key; answers 200 {"kid": <the new key's id>}
// GET /__control/ready answers 200 once the server is listening with its tables in place.

import http from "node:http";

import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { bearer, createJwk, jwt } from "better-auth/plugins";
import pg from "pg";

const { DATABASE_URL, BETTER_AUTH_URL, BETTER_AUTH_SECRET, PORT } = process.env;
for (const [name, value] of Object.entries({
  DATABASE_URL,
  BETTER_AUTH_URL,
  BETTER_AUTH_SECRET,
  PORT,
})) {
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
}

// The jwt plugin's options: none (its defaults: EdDSA keys, 15-minute JWTs, iss and aud =
// baseURL). Named so that rotate-key hands the plugin's own key maker the same ones.
const jwtOptions = undefined;

const options = {
  baseURL: BETTER_AUTH_URL,
  secret: BETTER_AUTH_SECRET,
  database: new pg.Pool({ connectionString: DATABASE_URL, max: 5 }),
  emailAndPassword: { enabled: true },
  plugins: [jwt(jwtOptions), bearer()],
};
const auth = betterAuth(options);

// The same plan `npx @better-auth/cli migrate` runs: create what is missing, nothing else.
const { runMigrations } = await getMigrations(options);
await runMigrations();

const handle = toNodeHandler(auth);
let mode = { name: "normal", path: "" };
const hanging = new Set(); // responses held open by "hang", cut off when the mode changes

function control(request, response, url) {
  const action = url.pathname.slice("/__control/".length);
  if (request.method === "GET" && action === "ready") {
    return answer(response, 200, { ready: true });
  }
  if (request.method !== "POST") return answer(response, 405, { error: "POST" });
  if (["fail", "hang", "normal"].includes(action)) {
    mode = { name: action, path: url.searchParams.get("path") ?? "" };
    for (const held of hanging) held.destroy();
    hanging.clear();
    response.writeHead(204).end();
    return undefined;
  }
  if (action === "rotate-key") {
    return rotateKey().then(
      (kid) => answer(response, 200, { kid }),
      (error) => answer(response, 500, { error: String(error) }),
    );
  }
  return answer(response, 404, { error: `no control ${action}` });
}

// The jwt plugin signs with the newest live key of its `jwks` table and publishes every key
// there (until it expires, plus a grace period): a new row made by the plugin's own createJwk
// is a rotation, with the old key still in the JWKS as in a real one.
async function rotateKey() {
  const key = await createJwk({ context: await auth.$context }, jwtOptions);
  return key.id;
}

function answer(response, status, body) {
  response.writeHead(status, { "Content-Type": "application/json" });
  response.end(JSON.stringify(body));
}

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://127.0.0.1");
  if (url.pathname.startsWith("/__control/")) {
    control(request, response, url);
    return;
  }
  if (mode.name !== "normal" && url.pathname.startsWith(mode.path)) {
    request.resume(); // read the request, as a server that failed after reading it would
    if (mode.name === "fail") {
      answer(response, 500, { code: "INTERNAL_SERVER_ERROR", message: "failing on purpose" });
    } else {
      hanging.add(response);
      response.on("close", () => hanging.delete(response));
    }
    return;
  }
  handle(request, response);
});

server.listen(Number(PORT), "127.0.0.1", () => {
  console.log(`better-auth test server listening on 127.0.0.1:${PORT} as ${BETTER_AUTH_URL}`);
});

// The fixture stops the server with SIGTERM: close the pool so PostgreSQL sees it go.
process.on("SIGTERM", () => {
  server.close();
  for (const held of hanging) held.destroy();
  server.closeAllConnections();
  options.database.end().finally(() => process.exit(0));
});
