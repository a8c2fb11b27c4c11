-- wrk script: chat requests WITH memory. Each request names one of 64 sessions and carries a unique user
-- message, so every request is recalled against a growing store, gets memories injected, and is stored
-- (two rows per exchange; nothing is skipped as a retry).
wrk.method = "POST"
local words = { "garden", "piano", "travel", "budget", "recipe", "marathon", "python", "weekend", "paris",
    "coffee", "novel", "hiking", "sister", "tennis", "kitchen", "museum" }
local counter = 0
local thread_count = 0

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
end

-- MEMORY_MODE=read|write (optional) sends X-Memory-Mode: run.sh's cost split (recall and injection only / storing
-- only).
local mode = os.getenv("MEMORY_MODE")

-- Each wrk run (warm-up, c=16, c=64) starts a new counter: the run's start time keeps messages unique across runs,
-- or memproxy would rightly store a repeated message of the same session only once (retry de-duplication).
local run = tostring(os.time())

request = function()
    counter = counter + 1
    local id = run .. "-" .. tostring(tid or 0) .. "-" .. counter
    local a = words[(counter % #words) + 1]
    local b = words[((counter * 7 + 3) % #words) + 1]
    local body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},'
        .. '{"role":"user","content":"Note ' .. id .. ': remind me about the ' .. a .. ' and the ' .. b
        .. ' plans we discussed."}],"temperature":0.2,"max_tokens":200,"stream":false}'
    local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer sk-bench",
        ["X-Session-Id"] = "bench-" .. (counter % 64),
    }
    if mode then headers["X-Memory-Mode"] = mode end
    return wrk.format(nil, nil, headers, body)
end
