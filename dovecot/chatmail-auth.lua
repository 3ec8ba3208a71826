-- chatmail-auth.lua: Dovecot passdb and userdb answered by `chatmail auth`,
-- for Dovecot 2.3 (Debian 12) and 2.4 (Debian 13) alike.
--
-- The script asks the daemon over its Unix socket, in the Dovecot dict
-- protocol (handshake `H`, lookup `L`, iterate `I`; docs/dovecot-2.4.md):
--
--   passdb: L shared/passdb/<password>"<user>  -> O {"password": "{SHA512-CRYPT}...", ...}
--                                              or N (no such account, none created)
--   userdb: L shared/userdb/<user>             -> O {"home": ..., "uid": "vmail", ...}
--
-- A passdb lookup of an unknown, admissible address creates the account in
-- `chatmail auth` (race-free, first login wins); the password is then
-- checked here against the stored hash by Dovecot's own password_verify.
-- When `chatmail auth` cannot be reached or fails, the login fails with a
-- temporary error and nothing is created. Dovecot runs Lua passdbs and
-- userdbs in its auth-worker processes, so the blocking socket calls below
-- hold up one worker, never the auth process; each worker keeps one
-- connection to the daemon. The password is sent only on the socket; no
-- message below contains it. (Dovecot 2.3's dict passdb, used before,
-- put the password into the lookup key and logged that key whenever the
-- lookup failed: docs/dovecot-2.4.md.)
--
-- Dovecot 2.4 passes the socket in `lua_settings { socket = ... }`; 2.3
-- accepts no such argument, and uses the path below.

local unix = require("socket.unix")

local socket_path = "/run/chatmail-auth/auth.socket"
-- Creating an account hashes a password (milliseconds); anything near
-- this means the daemon is stuck, and the client should retry later.
local timeout_secs = 10
local conn = nil

function script_init(args)
  if args ~= nil and args.socket ~= nil then
    socket_path = args.socket
  end
  return 0
end

-- Dovecot's %E: a backslash before '"', '\'' and '\\', so the first
-- unescaped '"' separates password and user whatever the client typed.
local function escape_e(s)
  return (s:gsub("[\"'\\]", "\\%0"))
end

-- The dict protocol's tab escaping (Dovecot's str_tabescape).
local tab_escapes = { ["\1"] = "\0011", ["\t"] = "\001t", ["\r"] = "\001r", ["\n"] = "\001n", ["\0"] = "\0010" }
local tab_unescapes = { ["1"] = "\1", t = "\t", r = "\r", n = "\n", ["0"] = "\0" }

local function tab_escape(s)
  return (s:gsub("[%z\1\t\r\n]", tab_escapes))
end

local function tab_unescape(s)
  return (s:gsub("\1(.?)", function(c)
    return tab_unescapes[c] or c
  end))
end

-- A flat JSON object of string values, as `chatmail auth` writes it.
local json_escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function json_string(s, i)
  local out = {}
  i = i + 1
  while true do
    local j = s:find('["\\]', i)
    if j == nil then
      return nil
    end
    out[#out + 1] = s:sub(i, j - 1)
    if s:sub(j, j) == '"' then
      return table.concat(out), j + 1
    end
    local c = s:sub(j + 1, j + 1)
    if c == "u" then
      local cp = tonumber(s:match("^%x%x%x%x", j + 2) or "", 16)
      if cp == nil then
        return nil
      end
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local low = tonumber(s:match("^\\u(%x%x%x%x)", i) or "", 16)
        if low == nil then
          return nil
        end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
        i = i + 6
      end
      out[#out + 1] = utf8.char(cp)
    elseif json_escapes[c] ~= nil then
      out[#out + 1] = json_escapes[c]
      i = j + 2
    else
      return nil
    end
  end
end

local function json_object(s)
  local fields = {}
  local i = s:match("^%s*{%s*()")
  if i == nil then
    return nil
  end
  if s:sub(i, i) == "}" then
    return fields
  end
  while true do
    if s:sub(i, i) ~= '"' then
      return nil
    end
    local key, value, sep
    key, i = json_string(s, i)
    if key == nil then
      return nil
    end
    i = s:match("^%s*:%s*()", i)
    if i == nil or s:sub(i, i) ~= '"' then
      return nil
    end
    value, i = json_string(s, i)
    if value == nil then
      return nil
    end
    fields[key] = value
    sep, i = s:match("^%s*([,}])%s*()", i)
    if sep == "}" then
      return fields
    elseif sep ~= "," then
      return nil
    end
  end
end

local function disconnect()
  if conn ~= nil then
    conn:close()
    conn = nil
  end
end

local function connect()
  if conn ~= nil then
    return true
  end
  local c, err = unix.stream()
  if c == nil then
    return false, err
  end
  c:settimeout(timeout_secs)
  local ok, cerr = c:connect(socket_path)
  if ok == nil then
    c:close()
    return false, "connecting to " .. socket_path .. ": " .. tostring(cerr)
  end
  local sent, serr = c:send("H3\t2\t0\t\tauth\n")
  if sent == nil then
    c:close()
    return false, "greeting " .. socket_path .. ": " .. tostring(serr)
  end
  conn = c
  return true
end

-- Sends one request line and reads the first reply line. A connection the
-- daemon closed while idle (a restart) is retried once on a new one: every
-- request here is safe to repeat (a second creation attempt finds the
-- account the first one made).
local function request(line)
  local last_err
  for _ = 1, 2 do
    local ok, err = connect()
    if not ok then
      return nil, err
    end
    local sent, serr = conn:send(line)
    if sent ~= nil then
      local reply, rerr = conn:receive("*l")
      if reply ~= nil then
        return reply
      end
      last_err = "reading from " .. socket_path .. ": " .. tostring(rerr)
    else
      last_err = "writing to " .. socket_path .. ": " .. tostring(serr)
    end
    disconnect()
  end
  return nil, last_err
end

-- Looks up one key: the decoded fields, false for "not found", or nil and
-- an error.
local function lookup(key)
  local reply, err = request("L" .. tab_escape(key) .. "\t\n")
  if reply == nil then
    return nil, err
  end
  local kind, rest = reply:sub(1, 1), reply:sub(2)
  if kind == "N" then
    return false
  elseif kind == "O" then
    local fields = json_object(tab_unescape(rest))
    if fields == nil then
      return nil, "chatmail auth sent a reply that is not a JSON object"
    end
    return fields
  elseif kind == "F" then
    return nil, "chatmail auth failed: " .. tab_unescape(rest)
  end
  disconnect()
  return nil, "chatmail auth sent an unexpected reply"
end

function auth_password_verify(req, pass)
  local fields, err = lookup("shared/passdb/" .. escape_e(pass) .. '"' .. escape_e(req.user))
  if fields == nil then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, err
  elseif fields == false then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such account"
  elseif fields.password == nil then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "chatmail auth sent no password hash"
  end
  local ret, verr = req:password_verify(fields.password, pass)
  if ret == 1 then
    return dovecot.auth.PASSDB_RESULT_OK, {}
  elseif ret == 0 then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "password mismatch"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "verifying the hash: " .. tostring(verr)
end

function auth_userdb_lookup(req)
  local fields, err = lookup("shared/userdb/" .. escape_e(req.user))
  if fields == nil then
    return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, err
  elseif fields == false then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such account"
  end
  return dovecot.auth.USERDB_RESULT_OK, { home = fields.home, uid = fields.uid, gid = fields.gid }
end

-- `doveadm user '*'` and friends: every account's address.
function auth_userdb_iterate()
  local prefix = "shared/userdb/"
  local reply, err = request("I0\t0\t" .. prefix .. "\t\n")
  local users = {}
  while reply ~= nil and reply ~= "" do
    if reply:sub(1, 1) ~= "O" then
      disconnect()
      dovecot.i_error("chatmail-auth: listing accounts failed: " .. tab_unescape(reply:sub(2)))
      return users
    end
    local key = tab_unescape((reply:sub(2):match("^[^\t]*")))
    if key:sub(1, #prefix) == prefix then
      users[#users + 1] = key:sub(#prefix + 1)
    end
    reply, err = conn:receive("*l")
  end
  if reply == nil then
    disconnect()
    dovecot.i_error("chatmail-auth: listing accounts failed: " .. tostring(err))
  end
  return users
end
