-- wrk script: requests WITH memory. Each request names one of 64 sessions and carries a unique user message, so
-- every request is recalled against a growing store, gets memories injected, and is stored (two rows per exchange;
-- nothing is skipped as a retry). MEMORY_API=chat (default) | responses | messages picks the API: the same session,
-- message and words as a chat completion, a stateless Responses request (`instructions` for the system prompt, one
-- user message in `input`) or an Anthropic Messages request, of about the same size (run.sh's per-route cells).
wrk.method = "POST"
local words = { "garden", "piano", "travel", "budget", "recipe", "marathon", "python", "weekend", "paris",
    "coffee", "novel", "hiking", "sister", "tennis", "kitchen", "museum" }
local counter = 0
local thread_count = 0

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
end

-- MEMORY_MODE=read|write|off (optional) sends X-Memory-Mode: run.sh's cost split (recall and injection only /
-- storing only) and the per-route cells' memory-off cell.
local mode = os.getenv("MEMORY_MODE")
local api = os.getenv("MEMORY_API") or "chat"

-- Each wrk run (warm-up, c=16, c=64) starts a new counter: the run's start time keeps messages unique across runs,
-- or memproxy would rightly store a repeated message of the same session only once (retry de-duplication).
local run = tostring(os.time())

request = function()
    counter = counter + 1
    local id = run .. "-" .. tostring(tid or 0) .. "-" .. counter
    local a = words[(counter % #words) + 1]
    local b = words[((counter * 7 + 3) % #words) + 1]
    local user = '{"role":"user","content":"Note ' .. id .. ': remind me about the ' .. a .. ' and the ' .. b
        .. ' plans we discussed."}'
    local headers = { ["Content-Type"] = "application/json", ["X-Session-Id"] = "bench-" .. (counter % 64) }
    local path, body = nil, nil
    if api == "responses" then
        path = "/v1/responses"
        headers["Authorization"] = "Bearer sk-bench"
        body = '{"model":"gpt-4o-mini","instructions":"You are a helpful assistant.","input":[' .. user
            .. '],"temperature":0.2,"max_output_tokens":200,"store":false,"stream":false}'
    elseif api == "messages" then
        path = "/v1/messages"
        headers["x-api-key"] = "sk-ant-bench"
        headers["anthropic-version"] = "2023-06-01"
        body = '{"model":"claude-sonnet-4-5","max_tokens":200,"system":"You are a helpful assistant.","messages":['
            .. user .. '],"temperature":0.2,"stream":false}'
    else
        headers["Authorization"] = "Bearer sk-bench"
        body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},'
            .. user .. '],"temperature":0.2,"max_tokens":200,"stream":false}'
    end
    if mode then headers["X-Memory-Mode"] = mode end
    return wrk.format(nil, path, headers, body)
end
