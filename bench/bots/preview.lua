-- wrk script: client messages through the preview API, spread over many preview sessions.
-- The sessions file (one "bot_id session_id" per line) is made by scripts/bench.sh; path in PREVIEW_SESSIONS.
local sessions = {}
local token = os.getenv("PREVIEW_TOKEN")
for line in io.lines(os.getenv("PREVIEW_SESSIONS")) do
  local bot, session = line:match("(%S+)%s+(%S+)")
  sessions[#sessions + 1] = "/api/v1/bots/" .. bot .. "/preview/" .. session .. "/messages"
end
local counter = 0
local offset = 0

function setup(thread)
  thread:set("offset", math.random(1, #sessions))
end

function request()
  counter = counter + 1
  local path = sessions[((counter + offset) % #sessions) + 1]
  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token},
                    '{"text":"hello ' .. counter .. '"}')
end

function response(status, headers, body)
  if status ~= 200 then
    print("unexpected status " .. status .. ": " .. body)
  end
end
