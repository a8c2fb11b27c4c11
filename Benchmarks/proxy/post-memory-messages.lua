-- wrk script: Anthropic Messages requests WITH memory (POST /v1/messages), the counterpart of post-memory.lua for
-- run.sh's per-route cells: the same 64 sessions, the same unique user messages and the same words, in a Messages
-- request of about the same size (a `system` string, one user message; no `cache_control`, so the block goes into
-- `system` as chat's goes into its system message). MEMORY_MODE=off|read|write (optional) sends X-Memory-Mode.
wrk.method = "POST"
local words = { "garden", "piano", "travel", "budget", "recipe", "marathon", "python", "weekend", "paris",
    "coffee", "novel", "hiking", "sister", "tennis", "kitchen", "museum" }
local counter = 0
local thread_count = 0

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
end

local mode = os.getenv("MEMORY_MODE")

-- Each wrk run starts a new counter: the run's start time keeps messages unique across runs (retry de-duplication).
local run = tostring(os.time())

request = function()
    counter = counter + 1
    local id = run .. "-" .. tostring(tid or 0) .. "-" .. counter
    local a = words[(counter % #words) + 1]
    local b = words[((counter * 7 + 3) % #words) + 1]
    local body = '{"model":"claude-sonnet-4-5","max_tokens":200,"system":"You are a helpful assistant.",'
        .. '"messages":[{"role":"user","content":"Note ' .. id .. ': remind me about the ' .. a .. ' and the ' .. b
        .. ' plans we discussed."}],"temperature":0.2,"stream":false}'
    local headers = {
        ["Content-Type"] = "application/json",
        ["x-api-key"] = "sk-ant-bench",
        ["anthropic-version"] = "2023-06-01",
        ["X-Session-Id"] = "bench-" .. (counter % 64),
    }
    if mode then headers["X-Memory-Mode"] = mode end
    return wrk.format(nil, "/v1/messages", headers, body)
end
