-- wrk script: chat requests WITH memory and conversational text. Like post-memory.lua (64 sessions, a unique
-- user message per request, every exchange recalled, injected and stored), but each user message is a sentence of
-- 6–20 words drawn from a Zipf distribution (s = 1.05) over 30,000 words: the 50 most frequent are common English
-- words, the rest made-up words (the same construction as MemProxyBench's recall benchmark). post-memory.lua's
-- 16-word vocabulary puts every query term in nearly every memory of every session, which makes each recall rank
-- the whole candidate budget; this script measures the case of real conversations, where a query shares rare
-- words with a few memories.
wrk.method = "POST"

local common = { "i", "the", "you", "to", "and", "a", "it", "that", "my", "of", "is", "in", "was", "for", "me",
    "we", "so", "have", "but", "this", "with", "on", "just", "be", "about", "what", "like", "do", "your", "really",
    "great", "know", "think", "love", "time", "been", "going", "when", "can", "at", "had", "get", "all", "good",
    "one", "out", "some", "day", "new", "how" }
local syllables = { "ka", "lo", "ri", "mu", "sen", "ta", "vi", "ne", "por", "al", "bex", "do", "fi", "gra", "hu",
    "jin", "ke", "lam", "mor", "nu", "pe", "qui", "ros", "sa", "tor", "ul", "ve", "wen", "xo", "yan", "zed", "ing",
    "er", "ly", "tion", "ment" }

local words, cumulative = {}, {}
local counter, thread_count = 0, 0

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
end

function init(args)
    -- Seeded by the run's start time: each run (warm-up, c=16, c=64) sends different messages, so none is
    -- de-duplicated as a retry of an earlier run's.
    math.randomseed(os.time() * 100 + (tid or 0))
    local seen = {}
    for _, w in ipairs(common) do words[#words + 1] = w; seen[w] = true end
    while #words < 30000 do
        local parts = {}
        for i = 1, 2 + math.random(0, 2) do parts[i] = syllables[math.random(1, #syllables)] end
        local w = table.concat(parts)
        if not seen[w] then seen[w] = true; words[#words + 1] = w end
    end
    local total = 0
    for rank = 1, #words do
        total = total + 1 / rank ^ 1.05
        cumulative[rank] = total
    end
end

local function word()
    local target = math.random() * cumulative[#cumulative]
    local low, high = 1, #cumulative
    while low < high do
        local mid = math.floor((low + high) / 2)
        if cumulative[mid] < target then low = mid + 1 else high = mid end
    end
    return words[low]
end

request = function()
    counter = counter + 1
    local parts = {}
    for i = 1, math.random(6, 20) do parts[i] = word() end
    local body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},'
        .. '{"role":"user","content":"' .. table.concat(parts, " ") .. ' (' .. tostring(os.time()) .. '-' .. tostring(tid or 0) .. '-' .. counter
        .. ')"}],"temperature":0.2,"max_tokens":200,"stream":false}'
    local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer sk-bench",
        ["X-Session-Id"] = "bench-" .. (counter % 64),
    }
    return wrk.format(nil, nil, headers, body)
end
