-- chatmail-push.lua: Dovecot 2.3 push_notification_lua driver script.
--
-- For every message newly delivered to a user (LMTP), set the private
-- INBOX attribute /private/messagenew. Dovecot's mail_attribute_dict turns
-- that into the dict write `priv/<inbox-guid>/messagenew` on the
-- chatmail-metadata socket, which queues one push notification per device
-- token of the user. The value carries nothing: the event itself is the
-- message, and no mail content ever leaves for the notification gateway.
--
-- Mail the user sent to themselves is not pushed (their other devices are
-- online, they just sent it), as in chatmaild; it sets /private/nudge
-- instead. Both keys make chatmail-metadata nudge the inbox shortly after
-- the delivery, which wakes an IDLE connection that Dovecot hibernated
-- just when the message came in (see docs/latency.md): the other devices
-- of a self-sending user need that wake-up too.
--
-- Several messages delivered to one user in one transaction set each
-- attribute once: the phone fetches everything new in one go.

local function lower(s)
  if s == nil then
    return nil
  end
  return string.lower(s)
end

function dovecot_lua_notify_begin_txn(user)
  return { user = user, set = {} }
end

function dovecot_lua_notify_event_message_new(ctx, event)
  local user = ctx.user
  local attribute = "/private/messagenew"
  if lower(event.from_address) == lower(user.username) then
    attribute = "/private/nudge"
  end
  local name = event.mailbox
  local done = ctx.set[name] or {}
  ctx.set[name] = done
  if done[attribute] then
    return
  end
  done[attribute] = true

  local mbox = user:mailbox(name)
  local ok, err = pcall(function()
    -- Syncing opens the mailbox, which the attribute transaction needs.
    mbox:sync()
    mbox:metadata_set(attribute, "")
  end)
  mbox:free()
  if not ok then
    -- The mail is stored either way; only its notification is lost.
    dovecot.i_error("chatmail-push: setting " .. attribute .. " for " .. user.username
      .. " failed: " .. tostring(err))
  end
end

function dovecot_lua_notify_end_txn(ctx, success)
end
