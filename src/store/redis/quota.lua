-- One operation on one organization's shared quota state, atomically: the Redis port of
-- QuotaState::apply in quota.rs (see quota.rs beside this script for the arguments and the reply).
--
-- Lua numbers are doubles, exact for integers up to 2^53 only, and nanoseconds since the
-- epoch (~1.8e18) are beyond that. So every time in the hash is in nanoseconds from
-- `base`, a whole second since the epoch kept in the hash too, and moved to now when it
-- is more than a day old: times within ~52 days of base stay exact, and further ones
-- are clamped (a slot a month ago is as good as never; no reset is further ahead).
--
-- KEYS[1]: the organization's hash.
-- ARGV[1]: operation; ARGV[2], ARGV[3]: now (seconds, nanoseconds), or -1 for TIME;
-- ARGV[4..6]: candidate ends of the provider's day (seconds), first after now wins;
-- ARGV[7..]: the operation's numbers.

local key = KEYS[1]
local op = ARGV[1]
local FAR = 4503599627370496 -- 2^52
local NS = 1000000000
local TTL_MIN = 26 * 3600 * NS -- longer than any day, daylight saving included
-- Claims of high (ch) and normal (cn) runs, and the slots normal (sn) and low (sl) runs
-- under them count their share from (rank.rs).
local LIVE = { 'rt', 'tt', 'bl', 'he', 'de', 'te', 'ch', 'cn' }
local TIMES = { 'rt', 'tt', 'bl', 'he', 'de', 'te', 'ch', 'cn', 'sn', 'sl' }
local FIELDS = { 'base', 'rt', 'tt', 'bl', 'he', 'hu', 'de', 'du', 'te', 'tu', 'ch', 'cn', 'sn', 'sl' }

local function arg(i)
  local v = tonumber(ARGV[i])
  if v == nil then
    error('autolabel quota script: argument ' .. i .. ' is not a number')
  end
  return v
end

local function clamp(v)
  if v > FAR then return FAR end
  if v < -FAR then return -FAR end
  return v
end

local now_s, now_ns = arg(2), arg(3)
if now_s < 0 then
  -- Servers before 5.0 replicate scripts verbatim unless told to replicate effects,
  -- and refuse a write after TIME.
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now_s = tonumber(t[1])
  now_ns = tonumber(t[2]) * 1000
end

-- The state as stored; anything missing or unreadable is a fresh organization's.
local raw = redis.call('HMGET', key, unpack(FIELDS))
local base = nil
if raw[1] then base = tonumber(raw[1]) end
local fresh = base == nil
local s = {}
for i = 2, #FIELDS do
  s[FIELDS[i]] = (not fresh and raw[i] and tonumber(raw[i])) or nil
end
for _, f in ipairs(TIMES) do
  s[f] = s[f] or -FAR
end
for _, f in ipairs({ 'hu', 'du', 'tu' }) do
  s[f] = s[f] or 0
end
if fresh then
  base = now_s
elseif math.abs(now_s - base) > 86400 then
  local shift = (base - now_s) * NS
  for _, f in ipairs(TIMES) do
    s[f] = clamp(s[f] + shift)
  end
  base = now_s
end
local now = (now_s - base) * NS + now_ns

-- When the window `p` ('h' hour, 'd' day, 't' tokens of the day) that contains now ends.
local function end_after(p)
  if p == 'h' then
    local secs = base + math.floor(now / NS)
    return ((math.floor(secs / 3600) + 1) * 3600 - base) * NS
  end
  local last = 0
  for i = 4, 6 do
    last = arg(i)
    local e = (last - base) * NS
    if e > now then return e end
  end
  -- This server's clock is far ahead of the caller's: whole days after the last one.
  local e = (last - base) * NS
  return e + (math.floor((now - e) / (86400 * NS)) + 1) * 86400 * NS
end

-- A new window once the current one has ended (at the provider's reset).
local function roll(p)
  if now >= s[p .. 'e'] then
    s[p .. 'e'] = clamp(end_after(p))
    s[p .. 'u'] = 0
  end
end

local reply = { 0, 0, 0 }

if op == 'decide' then
  local lease, tokens, rpm_t, burst, tpm_t = arg(7), arg(8), arg(9), arg(10), arg(11)
  local limits = { h = arg(12), d = arg(13), t = arg(14) }
  local slack, room_for_leases = arg(17), arg(18)
  local level, share, grace = arg(19), arg(20), arg(21)
  local function claim(untl)
    if level == 2 then s.ch = math.max(s.ch, untl) end
    if level == 1 then s.cn = math.max(s.cn, untl) end
  end
  -- The slot a lower run counts its share from (-FAR: none yet, further back than any
  -- step), and from when it is owed its next: a step of its limits now later.
  local function share_from()
    if level == 1 then return s.sn end
    if level == 0 then return s.sl end
    return -FAR
  end
  local function owed_from()
    local from = share_from()
    if from <= -FAR then return -FAR end
    return from + share
  end
  if fresh then
    -- Today's counts start from the caller's ledger.
    for _, p in ipairs({ 'h', 'd', 't' }) do roll(p) end
    s.du = math.max(s.du, arg(15))
    s.tu = math.max(s.tu, arg(16))
  end
  -- Hour and day counts first: a full window is a long wait.
  local room, full = math.huge, nil
  for _, p in ipairs({ 'h', 'd', 't' }) do
    local limit = limits[p]
    if limit >= 0 then
      roll(p)
      local cost = 1
      if p == 't' then cost = tokens end
      local used = s[p .. 'u']
      if used + cost > limit then
        if full == nil or s[p .. 'e'] > full then full = s[p .. 'e'] end
      else
        room = math.min(room, math.floor((limit - used) / cost))
      end
    end
  end
  if full ~= nil then
    reply = { 3, full - now, 0 }
  else
    local wait = s.bl - now
    if rpm_t > 0 then wait = math.max(wait, s.rt - now) end
    local cost = math.min(tokens, burst)
    if tpm_t > 0 then
      local allowed_at = math.max(s.tt, now) + cost * tpm_t - burst * tpm_t
      wait = math.max(wait, allowed_at - now)
    end
    -- A higher priority waiting for slots: this run gets one only when owed its share.
    local above = nil
    if share > 0 then
      if level < 2 and s.ch > now then above = s.ch end
      if level < 1 and s.cn > now then above = math.max(above or s.cn, s.cn) end
    end
    local owed = above ~= nil and owed_from() <= now
    if wait > slack and not (owed and s.bl <= now) then
      if share > 0 then claim(now + wait + grace) end
      reply = { 2, wait - slack, 0 }
    elseif above ~= nil and not owed then
      local back = math.min(owed_from(), above)
      claim(back + grace)
      reply = { 2, math.max(back - now, slack), 0 }
    else
      local at = now + math.max(wait, 0)
      local count = lease
      if room < room_for_leases or above ~= nil then count = 1 end
      if above ~= nil then
        local from = at - share
        if share_from() > -FAR then from = math.max(share_from() + share, from) end
        if level == 1 then s.sn = from end
        if level == 0 then s.sl = from end
      end
      local first = math.max(s.rt, at)
      if rpm_t > 0 then s.rt = first + rpm_t * count end
      if tpm_t > 0 then s.tt = math.max(s.tt, at) + cost * count * tpm_t end
      s.hu = s.hu + count
      s.du = s.du + count
      s.tu = s.tu + tokens * count
      reply = { 1, count, first - now }
    end
  end
elseif op == 'refund' then
  local count, tokens = arg(7), arg(8)
  s.hu = math.max(s.hu - count, 0)
  s.du = math.max(s.du - count, 0)
  s.tu = math.max(s.tu - tokens, 0)
elseif op == 'ease' then
  if arg(7) ~= 0 then s.rt = math.min(s.rt, now) end
  if arg(8) ~= 0 then s.tt = math.min(s.tt, now) end
elseif op == 'sync' or op == 'restate' then
  local p, used, reset = ARGV[7], arg(8), arg(9)
  if p == 'h' or p == 'd' or p == 't' then
    roll(p)
    if op == 'sync' then
      s[p .. 'u'] = math.max(s[p .. 'u'], used)
    else
      s[p .. 'u'] = used
    end
    if reset >= 0 then s[p .. 'e'] = clamp(now + reset) end
  end
elseif op == 'block' then
  s.bl = math.max(s.bl, clamp(now + arg(7)))
else
  error('autolabel quota script: unknown operation ' .. tostring(op))
end

-- Written back whole; the hash lives a day past its last write, or until the furthest
-- time it holds, so an organization no run uses any more vanishes by itself.
local function int(v) return string.format('%.0f', v) end
local latest = 0
local out = { 'base', int(base) }
for i = 2, #FIELDS do
  local f = FIELDS[i]
  out[#out + 1] = f
  out[#out + 1] = int(s[f])
end
-- (What is owed to a lower run may lie far ahead; it does not keep the hash.)
for _, f in ipairs(LIVE) do
  latest = math.max(latest, s[f] - now)
end
redis.call('HSET', key, unpack(out))
local ttl = math.max(TTL_MIN, latest + 3600 * NS)
redis.call('PEXPIRE', key, int(math.ceil(ttl / 1000000)))

return { now_s, now_ns, reply[1], reply[2], reply[3] }
