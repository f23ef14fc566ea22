//! The Lua scripts. Each touches only the keys in `KEYS`, all in one hash slot, and takes the
//! time from the server (`TIME`), so `version` and `last_updated` are set where the write happens.
//!
//! Metadata values travel as raw JSON text (`ARGV`) and are stored as raw JSON text (one hash field
//! per entry): no script ever decodes a value. Redis' Lua numbers are doubles and its cjson turns
//! `{}` into `[]`, so decoding would lose integers above 2^53 and mangle empty objects.

use fred::types::scripts::Script;

/// Writes `ARGV[from..]` (`key, raw-json` pairs) as metadata fields, in chunks that stay within
/// Lua's `unpack` limit.
macro_rules! set_meta {
    () => {
        r"
local function set_meta(key, from)
  local fields = {}
  for i = from, #ARGV, 2 do
    fields[#fields + 1] = 'm:' .. ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    if #fields >= 1000 then
      redis.call('HSET', key, unpack(fields))
      fields = {}
    end
  end
  if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
end
"
    };
}

/// `KEYS[1]` session. `ARGV`: base JSON, date_created (0 = now), expire-at (0 = never), index
/// token, then `key, raw-json` pairs. Returns `false` if taken, else `{date_created, now}`.
const CREATE: &str = concat!(
    set_meta!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local now = redis.call('TIME')[1]
local created = ARGV[2]
if created == '0' then created = now end
redis.call('HSET', KEYS[1], 'b', ARGV[1], 'c', created, 'u', now, 'v', 1, 'i', ARGV[4])
set_meta(KEYS[1], 5)
if ARGV[3] ~= '0' then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return {created, now}
"
);

/// `KEYS[1]` session. `ARGV`: expected version (`0` = any), base JSON, expire-at (0 = never),
/// index token, then `key, raw-json` pairs. Returns `{0}` not found, `{1, stored_version}`
/// conflict, `{2, new_version, date_created, now, old_base, old_token}` replaced.
const REPLACE: &str = concat!(
    set_meta!(),
    r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return {0} end
if ARGV[1] ~= '0' and ARGV[1] ~= v then return {1, v} end
local created = redis.call('HGET', KEYS[1], 'c')
local old = redis.call('HGET', KEYS[1], 'b')
local token = redis.call('HGET', KEYS[1], 'i') or ''
local now = redis.call('TIME')[1]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'b', ARGV[2], 'c', created, 'u', now, 'v', v, 'i', ARGV[4])
set_meta(KEYS[1], 5)
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
if ARGV[3] ~= '0' then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return {2, version, created, now, old, token}
"
);

/// The body of the apply scripts: `KEYS[1]` session, `ARGV` ops `s key raw-json` | `d key` |
/// `i key by` | `e`. Set-if-exists (`false` when there is no session); field writes keep the key's TTL; leaves
/// the new version in `v`.
macro_rules! apply_delta {
    () => {
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local i = 1
while i <= #ARGV do
  local op = ARGV[i]
  if op == 's' then
    redis.call('HSET', KEYS[1], 'm:' .. ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'd' then
    redis.call('HDEL', KEYS[1], 'm:' .. ARGV[i + 1])
    i = i + 2
  elseif op == 'i' then
    -- Stored values are raw JSON, so an integer entry is a string HINCRBY reads; anything else
    -- becomes the increment. An overflow leaves the entry as it was (as MetadataChange says).
    local field = 'm:' .. ARGV[i + 1]
    local current = redis.call('HGET', KEYS[1], field)
    local added = false
    if current and string.match(current, '^%-?%d+$') then
      local reply = redis.pcall('HINCRBY', KEYS[1], field, ARGV[i + 2])
      added = type(reply) ~= 'table' or string.find(reply.err or '', 'overflow', 1, true) ~= nil
    end
    if not added then redis.call('HSET', KEYS[1], field, ARGV[i + 2]) end
    i = i + 3
  elseif op == 'e' then
    local dead = {}
    for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
      if string.sub(field, 1, 2) == 'm:' then dead[#dead + 1] = field end
    end
    for j = 1, #dead, 1000 do
      redis.call('HDEL', KEYS[1], unpack(dead, j, math.min(j + 999, #dead)))
    end
    i = i + 1
  else
    return redis.error_reply('keycard: unknown delta op ' .. tostring(op))
  end
end
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
local now = redis.call('TIME')[1]
redis.call('HSET', KEYS[1], 'u', now)
"
    };
}

/// Applies a delta; returns `false` or the whole hash (`HGETALL`) after the change.
const APPLY: &str = concat!(apply_delta!(), "return redis.call('HGETALL', KEYS[1])\n");

/// As [`APPLY`], returning only `"<new version> <last_updated>"` (or `false`): what a cached
/// store needs to advance its entry to the new state without reading it back.
const APPLY_VERSION: &str = concat!(apply_delta!(), "return string.format('%d %s', v, now)\n");

/// `KEYS[1]` session. `ARGV[1]` (optional): delete only if the session's alias is this one.
/// Returns `false` or the deleted hash.
const DELETE: &str = r"
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return false end
if ARGV[1] then
  local ok, session = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'b') or '{}')
  local alias = ok and type(session) == 'table' and session['alias'] or ''
  if alias == cjson.null then alias = '' end
  if alias ~= ARGV[1] then return false end
end
redis.call('DEL', KEYS[1])
return all
";

/// `KEYS` index `lex`, `exp`, `tok`. `ARGV`: member, deadline (`+inf` = never), token. Adds or
/// touches an index entry (the deadline only grows, the token is the writer's) and sweeps up to 64
/// entries past their deadline.
const INDEX_ADD: &str = r"
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now, 'LIMIT', 0, 64)
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('ZREM', KEYS[2], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
end
return #dead
";

/// `KEYS` index `lex`, `exp`, `tok`. `ARGV`: `member, token` pairs. Removes each member whose
/// token is still the given one (compare-and-delete: an entry re-written meanwhile by another
/// create/replace stays). Returns the number removed.
const INDEX_DROP: &str = r"
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    removed = removed + 1
  end
end
return removed
";

/// Standalone and sentinel only (it touches session keys it derives, in other slots): `KEYS`
/// alias index `lex`, `exp`, `tok`, then the key index `lex`, `exp`, `tok`. `ARGV`: the session
/// key prefix (`P:{s:`), the alias. Deletes, in one step, every session in the alias index whose
/// stored alias is `ARGV[2]`, with its entries in both indexes; entries of sessions that are gone
/// or now have another alias are left to the listings' cleanup. Returns `{key_id, hash}` pairs.
const DELETE_ALIAS: &str = r"
local deleted = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. member .. '}'
  local base = redis.call('HGET', key, 'b')
  if base then
    local ok, session = pcall(cjson.decode, base)
    if not ok or type(session) ~= 'table' then
      return redis.error_reply('keycard: unreadable session ' .. key)
    end
    local alias = session['alias']
    if alias == nil or alias == cjson.null then alias = '' end
    if alias == ARGV[2] then
      deleted[#deleted + 1] = {member, redis.call('HGETALL', key)}
      redis.call('DEL', key)
      for first = 1, 4, 3 do
        redis.call('ZREM', KEYS[first], member)
        redis.call('ZREM', KEYS[first + 1], member)
        redis.call('HDEL', KEYS[first + 2], member)
      end
    end
  end
end
return deleted
";

/// `KEYS` index `lex`, `exp`, `tok`. `ARGV`: lower bound (`-` or `(member`), count. Returns
/// `{members, tokens}`: one page in key-id order with each entry's token.
const INDEX_PAGE: &str = r"
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
if #members == 0 then return {{}, {}} end
return {members, redis.call('HMGET', KEYS[3], unpack(members))}
";

/// `KEYS[1]` session. The session's hash in one string, so the reply is one frame instead of two
/// per field: every field but the index token `i` as `<length>:<name><length>:<value>`, lengths
/// in bytes; `false` when there is no session. Fields are copied, never decoded.
const LOAD: &str = r"
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return false end
local out = {}
for i = 1, #all, 2 do
  local name = all[i]
  if name ~= 'i' then
    local value = all[i + 1]
    out[#out + 1] = #name .. ':' .. name .. #value .. ':' .. value
  end
end
return table.concat(out)
";

/// The scripts, hashed once; `EVALSHA` with a reload on `NOSCRIPT` (fred's
/// `evalsha_with_reload`, which loads on every primary).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) load: Script,
    pub(crate) create: Script,
    pub(crate) replace: Script,
    pub(crate) apply: Script,
    pub(crate) apply_version: Script,
    pub(crate) delete: Script,
    pub(crate) delete_alias: Script,
    pub(crate) index_add: Script,
    pub(crate) index_drop: Script,
    pub(crate) index_page: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            load: Script::from_lua(LOAD),
            create: Script::from_lua(CREATE),
            replace: Script::from_lua(REPLACE),
            apply: Script::from_lua(APPLY),
            apply_version: Script::from_lua(APPLY_VERSION),
            delete: Script::from_lua(DELETE),
            delete_alias: Script::from_lua(DELETE_ALIAS),
            index_add: Script::from_lua(INDEX_ADD),
            index_drop: Script::from_lua(INDEX_DROP),
            index_page: Script::from_lua(INDEX_PAGE),
        }
    }

    pub(crate) fn all(&self) -> [&Script; 10] {
        [
            &self.load,
            &self.create,
            &self.replace,
            &self.apply,
            &self.apply_version,
            &self.delete,
            &self.delete_alias,
            &self.index_add,
            &self.index_drop,
            &self.index_page,
        ]
    }
}
