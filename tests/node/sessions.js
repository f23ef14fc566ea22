// Drives keycard's Auth0-compatible sessions API with the official Auth0 Node SDK, unmodified:
// `tests/tests/auth0_sdk.rs` starts the admin example over https and runs this with
// NODE_EXTRA_CA_CERTS pointing at its certificate. It prints one JSON object: the outcome of each
// SDK call, which the Rust test asserts on.
//
// Env: KEYCARD_DOMAIN (host:port), KEYCARD_TOKEN (the admin bearer token), SESSION_ID,
// USER_ID (the session's alias), OTHER_SESSION_ID (a second session of USER_ID).
"use strict";
const { ManagementClient } = require("auth0");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

async function outcome(call) {
  try {
    const { data, rawResponse } = await call().withRawResponse();
    return { ok: true, status: rawResponse.status, data: data ?? null };
  } catch (error) {
    return {
      ok: false,
      name: error.constructor.name,
      statusCode: error.statusCode ?? null,
      body: error.body ?? null,
      message: String(error.message),
    };
  }
}

async function main() {
  const domain = env("KEYCARD_DOMAIN");
  const id = env("SESSION_ID");
  const userId = env("USER_ID");
  const other = env("OTHER_SESSION_ID");
  const client = new ManagementClient({ domain, token: env("KEYCARD_TOKEN") });
  const stranger = new ManagementClient({ domain, token: "not-a-token-keycard-knows" });

  const results = {};
  results.get = await outcome(() => client.sessions.get(id));
  // The SDK's own example: `await client.sessions.update("id")`, no body.
  results.update_empty = await outcome(() => client.sessions.update(id));
  results.update = await outcome(() =>
    client.sessions.update(id, { session_metadata: { plan: "platinum", region: "eu" } }),
  );
  results.get_after_update = await outcome(() => client.sessions.get(id));
  // GET -> modify -> PATCH: what GET returned, one value changed, sent back as is.
  if (results.get_after_update.ok) {
    const metadata = { ...results.get_after_update.data.session_metadata, region: "us" };
    results.round_trip = await outcome(() =>
      client.sessions.update(id, { session_metadata: metadata }),
    );
  }
  const page = await client.users.sessions.list(userId, { take: 1 });
  results.list_first_page = { sessions: page.data, has_next: page.hasNextPage() };
  const all = [];
  for await (const session of await client.users.sessions.list(userId, { take: 1 })) {
    all.push(session.id);
  }
  results.list_all_ids = all;
  results.unauthorized = await outcome(() => stranger.sessions.get(id));
  results.revoke = await outcome(() => client.sessions.revoke(id));
  results.get_revoked = await outcome(() => client.sessions.get(id));
  results.revoke_revoked = await outcome(() => client.sessions.revoke(id));
  results.delete = await outcome(() => client.sessions.delete(other));
  results.delete_deleted = await outcome(() => client.sessions.delete(other));
  results.delete_user = await outcome(() => client.users.sessions.delete(userId));
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().catch((error) => {
  process.stderr.write(`sessions.js failed: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
