-- wrk script for every benchmark scenario (bench/run.py starts wrk with it; nothing here is product code).
--
-- One connection per wrk thread (-t N -c N), so a thread's Lua state is one client: it pairs each response
-- with its request, which the two-step login needs. Environment:
--   BENCH_SCENARIO  get | validate | token | introspect | login | mix
--   BENCH_TARGETS   host:port[,host:port...]   client i talks to target i mod n (the load split between nodes)
--   BENCH_DIR       folder of credential files: st.<i>.txt, code.<i>.txt, at.<i>.txt, user.<i>.txt
--   BENCH_PATH      path for `get`;  BENCH_EXPECT  a substring a `get` body must contain (optional)
--   BENCH_VALIDATE  validation path (/cas/serviceValidate or /cas/p3/serviceValidate)
--   BENCH_SERVICE, BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, BENCH_REDIRECT_URI, BENCH_PASSWORD
--   BENCH_MIX       weights, e.g. "login=2,sv=20,p3=20,token=15,introspect=15,discovery=14,jwks=14"
-- done() prints one line "BENCHJSON {...}" with counts, errors and latency percentiles (microseconds).

local scenario = os.getenv("BENCH_SCENARIO") or "get"
local dir = os.getenv("BENCH_DIR") or "."
local threads = {}
local counter = 0

local function b64(data)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((data:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

function setup(thread)
  local targets = {}
  for t in string.gmatch(os.getenv("BENCH_TARGETS"), "[^,]+") do table.insert(targets, t) end
  local target = targets[(counter % #targets) + 1]
  local host, port = target:match("([^:]+):(%d+)")
  thread.addr = wrk.lookup(host, port)[1]
  thread:set("id", counter)
  thread:set("target", target)
  counter = counter + 1
  table.insert(threads, thread)
end

-- per-thread state (each thread runs init() in its own Lua state) ---------------------------------------------
local creds = {}        -- kind -> list of lines
local pos = {}          -- kind -> next index
ok_n, bad_n, non2xx, exhausted, logins = 0, 0, 0, 0, 0
kinds = {}
local pending = nil     -- what the request in flight was: {kind=..., expect=...}
local step = nil        -- login: nil (next: GET form), or {cookie=..., token=..., user=...}
local plan = {}         -- mix: list of kinds drawn from weights
local plan_i = 0

local function read_lines(kind)
  local list = {}
  local f = io.open(dir .. "/" .. kind .. "." .. id .. ".txt", "r")
  if f then
    for line in f:lines() do if #line > 0 then table.insert(list, line) end end
    f:close()
  end
  creds[kind] = list
  pos[kind] = 1
end

local function next_cred(kind)
  local list = creds[kind]
  local i = pos[kind]
  if list == nil or i > #list then return nil end
  pos[kind] = i + 1
  return list[i]
end

local service = os.getenv("BENCH_SERVICE") or ""
local client_auth = "Basic " .. b64((os.getenv("BENCH_CLIENT_ID") or "") .. ":" .. (os.getenv("BENCH_CLIENT_SECRET") or ""))
local form = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = client_auth }
local host_header = nil

function init(args)
  host_header = target
  for _, kind in ipairs({ "st", "code", "at", "user" }) do read_lines(kind) end
  if scenario == "mix" then
    local spec = os.getenv("BENCH_MIX") or ""
    for name, weight in string.gmatch(spec, "(%w+)=(%d+)") do
      for _ = 1, tonumber(weight) do table.insert(plan, name) end
    end
    math.randomseed(1000 + id)
    for i = #plan, 2, -1 do local j = math.random(i); plan[i], plan[j] = plan[j], plan[i] end
    plan_i = math.random(#plan)
  end
end

local function get(path, kind, expect)
  pending = { kind = kind, expect = expect, status = 200 }
  return wrk.format("GET", path, { Host = host_header })
end

local function validate(path, kind)
  local st = next_cred("st")
  if st == nil then
    exhausted = exhausted + 1
    return get("/.well-known/openid-configuration", "filler", nil)
  end
  pending = { kind = kind, expect = "<cas:authenticationSuccess>", status = 200 }
  return wrk.format("GET", path .. "?service=" .. urlencode(service) .. "&ticket=" .. st, { Host = host_header })
end

local function token()
  local code = next_cred("code")
  if code == nil then
    exhausted = exhausted + 1
    return get("/.well-known/openid-configuration", "filler", nil)
  end
  pending = { kind = "token", expect = '"access_token"', status = 200 }
  local h = { Host = host_header, ["Content-Type"] = form["Content-Type"], Authorization = form.Authorization }
  return wrk.format("POST", "/oidc/token", h, "grant_type=authorization_code&code=" .. urlencode(code)
    .. "&redirect_uri=" .. urlencode(os.getenv("BENCH_REDIRECT_URI") or ""))
end

local function introspect()
  local list = creds["at"]
  local at = list[math.random(#list)]
  pending = { kind = "introspect", expect = '"active":%s*true', status = 200, pattern = true }
  local h = { Host = host_header, ["Content-Type"] = form["Content-Type"], Authorization = form.Authorization }
  return wrk.format("POST", "/oidc/introspect", h, "token=" .. urlencode(at))
end

local function login()
  if step == nil then
    pending = { kind = "login_form", expect = 'name="csrf_token"', status = 200 }
    return wrk.format("GET", "/cas/login?service=" .. urlencode(service), { Host = host_header })
  end
  pending = { kind = "login", status = 302, location = "ticket=ST-" }
  local h = { Host = host_header, ["Content-Type"] = "application/x-www-form-urlencoded", Cookie = step.cookie }
  return wrk.format("POST", "/cas/login?service=" .. urlencode(service), h,
    "csrf_token=" .. urlencode(step.token) .. "&service=" .. urlencode(service) .. "&username="
    .. urlencode(step.user) .. "&password=" .. urlencode(os.getenv("BENCH_PASSWORD") or ""))
end

local actions = {
  sv = function() return validate("/cas/serviceValidate", "sv") end,
  p3 = function() return validate("/cas/p3/serviceValidate", "p3") end,
  token = token,
  introspect = introspect,
  login = login,
  discovery = function() return get("/.well-known/openid-configuration", "discovery", '"issuer"') end,
  jwks = function() return get("/oidc/jwks", "jwks", '"keys"') end,
}

function request()
  if scenario == "get" then
    return get(os.getenv("BENCH_PATH"), "get", os.getenv("BENCH_EXPECT"))
  elseif scenario == "validate" then
    return validate(os.getenv("BENCH_VALIDATE"), "sv")
  elseif scenario == "token" then
    return token()
  elseif scenario == "introspect" then
    return introspect()
  elseif scenario == "login" then
    return login()
  end
  -- mix: a login in progress finishes first (its POST), then the next planned action
  if step ~= nil then return login() end
  plan_i = plan_i % #plan + 1
  return actions[plan[plan_i]]()
end

function response(status, headers, body)
  local p = pending
  if p == nil then return end
  pending = nil
  kinds[p.kind] = (kinds[p.kind] or 0) + 1
  if status < 200 or status >= 400 or (p.status == 200 and status >= 300) then
    non2xx = non2xx + 1
    if p.kind == "login" or p.kind == "login_form" then step = nil end
    return
  end
  local good = true
  if p.expect ~= nil and p.expect ~= "" then
    good = body ~= nil and (p.pattern and body:find(p.expect) or body:find(p.expect, 1, true)) ~= nil
  end
  if p.kind == "login_form" then
    local cookie = nil
    for name, value in pairs(headers) do
      if string.lower(name) == "set-cookie" then cookie = value:match("^([^;]+)") end
    end
    local tok = body and body:match('name="csrf_token"[^>]*value="([^"]+)"')
    local user = next_cred("user")
    if user == nil then read_lines("user"); user = next_cred("user") end
    if tok and cookie and user then
      step = { cookie = cookie, token = tok, user = user }
    else
      good = false
    end
  elseif p.kind == "login" then
    step = nil
    local location = nil
    for name, value in pairs(headers) do
      if string.lower(name) == "location" then location = value end
    end
    good = status == 302 and location ~= nil and location:find(p.location, 1, true) ~= nil
    if good then logins = logins + 1 end
  end
  if good then ok_n = ok_n + 1 else bad_n = bad_n + 1 end
end

local function json_kinds(t)
  local parts = {}
  for k, v in pairs(t) do table.insert(parts, string.format('"%s":%d', k, v)) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local ok, bad, n2, ex, lg = 0, 0, 0, 0, 0
  local all = {}
  for _, t in ipairs(threads) do
    ok = ok + (t:get("ok_n") or 0)
    bad = bad + (t:get("bad_n") or 0)
    n2 = n2 + (t:get("non2xx") or 0)
    ex = ex + (t:get("exhausted") or 0)
    lg = lg + (t:get("logins") or 0)
    local k = t:get("kinds") or {}
    for name, v in pairs(k) do all[name] = (all[name] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,"ok":%d,"bad":%d,"non2xx":%d,"exhausted":%d,' ..
    '"logins":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,' ..
    '"max":%d,"mean":%.1f,"kinds":%s}\n',
    summary.duration, summary.requests, summary.bytes, ok, bad, n2, ex, lg, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    json_kinds(all)))
end
