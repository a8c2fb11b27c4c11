-- wrk script: Responses API requests WITH memory (POST /v1/responses), the counterpart of post-memory.lua for
-- run.sh's per-route cells: the same 64 sessions, the same unique user messages and the same words, in a stateless
-- Responses request of about the same size (`instructions` for the system prompt, one user message in `input`).
-- MEMORY_MODE=off|read|write (optional) sends X-Memory-Mode.
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
    local body = '{"model":"gpt-4o-mini","instructions":"You are a helpful assistant.",'
        .. '"input":[{"role":"user","content":"Note ' .. id .. ': remind me about the ' .. a .. ' and the ' .. b
        .. ' plans we discussed."}],"temperature":0.2,"max_output_tokens":200,"store":false,"stream":false}'
    local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer sk-bench",
        ["X-Session-Id"] = "bench-" .. (counter % 64),
    }
    if mode then headers["X-Memory-Mode"] = mode end
    return wrk.format(nil, "/v1/responses", headers, body)
end
