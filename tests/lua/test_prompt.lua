-- Prompt templates (lua/genlab/prompt.lua): {name} variables, {{ }} escapes,
-- errors naming missing and unknown variables, partials, chat prompts with
-- roles, history placeholders, few-shot blocks in order.
local T = require "tap"
local gl = require "genlab"
local P = require "genlab.prompt"

-- string templates
local t = P.template("Tell me about {topic} in {n} words.")
T.eq(table.concat(t.variables, ","), "topic,n", "variables in order of appearance")
T.eq(t:format { topic = "owls", n = 10 }, "Tell me about owls in 10 words.", "format fills variables (numbers too)")
T.eq(gl.prompt, P, "gl.prompt is the module")

local j = P.template('Reply as JSON: {{"answer": "{a}", "list": [{{}}]}}')
T.eq(j:format { a = "x" }, 'Reply as JSON: {"answer": "x", "list": [{}]}', "{{ and }} are literal braces (JSON)")
T.eq(#j.variables, 1, "escaped braces are not variables")
T.eq(P.template("{x}{x}"):format { x = "ab" }, "abab", "a variable used twice")
T.eq(P.template("{a}"):format { a = "{b}" }, "{b}", "values are not re-read as templates")

T.raises(function() t:format { topic = "owls" } end, "missing variable: n", "missing variable is named")
T.raises(function() t:format {} end, "missing variables: topic, n", "all missing variables are named")
T.raises(function() t:format { topic = "a", n = 1, colour = "red" } end, "unknown variable: colour",
  "unknown variable is named")
T.raises(function() P.template("a { b") end, "bad '{' at byte 3", "lone { is an error")
T.raises(function() P.template("a } b") end, "lone '}' at byte 3", "lone } is an error")
T.raises(function() P.template("{1x}") end, "bad '{'", "a variable name must be an identifier")
T.raises(function() t:format { topic = {}, n = 1 } end, "variable 'topic' must be a string or a number",
  "table values are rejected")

-- partial variables
local p = t:partial { n = 5 }
T.eq(table.concat(p.variables, ","), "topic", "partial removes the fixed variable")
T.eq(p:format { topic = "bees" }, "Tell me about bees in 5 words.", "partial value used")
T.eq(p:format { topic = "bees", n = 7 }, "Tell me about bees in 7 words.", "an explicit value overrides the partial")
T.eq(t:format { topic = "x", n = 1 }, "Tell me about x in 1 words.", "partial() leaves the original alone")
local calls = 0
local d = P.template("Today is {date}. {q}", { partial = { date = function() calls = calls + 1; return "Monday" end } })
T.eq(d:format { q = "Hi" }, "Today is Monday. Hi", "function partials are called at format time")
T.eq(calls, 1, "the function partial ran once")
T.raises(function() t:partial { nope = 1 } end, "partial variable 'nope' is not in the prompt", "bad partial name")
T.raises(function() P.template("x", { partal = {} }) end, "unknown option 'partal'", "unknown template option")

-- chat prompts
local chat = P.chat {
  { "system", "You are a {role}." },
  P.placeholder("history"),
  { "human", "{q}" },
}
T.eq(table.concat(chat.variables, ","), "role,history,q", "chat variables: messages and placeholder")
local hist = { { role = "user", content = "Hi" }, { "ai", "Hello {there}" } }
local msgs = chat:messages { role = "pirate", history = hist, q = "Where is {gold}?" }
T.eq(#msgs, 4, "system + two history turns + question")
T.eq(msgs[1].role .. "|" .. msgs[1].content, "system|You are a pirate.", "system message formatted")
T.eq(msgs[2].role .. "|" .. msgs[2].content, "user|Hi", "history turn 1 (role table form)")
T.eq(msgs[3].role .. "|" .. msgs[3].content, "assistant|Hello {there}", "history turn 2 (pair form, ai -> assistant, braces kept)")
T.eq(msgs[4].role .. "|" .. msgs[4].content, "user|Where is {gold}?", "human -> user; value braces kept")
T.eq(chat:format { role = "cat", history = {}, q = "Meow?" }, "System: You are a cat.\nHuman: Meow?",
  "chat format: LangChain-style Role: text lines, empty history")
T.raises(function() chat:messages { role = "cat", q = "x" } end, "missing variable: history",
  "a placeholder is a required variable")
T.raises(function() chat:messages { role = "cat", q = "x", history = {}, extra = 1 } end, "unknown variable: extra",
  "unknown variable in a chat prompt")
T.raises(function() chat:messages { role = "cat", q = "x", history = { { "robot", "x" } } } end,
  "placeholder 'history': message 1 has unknown role 'robot'", "bad history message named")
local opt = P.chat { P.placeholder("history", { optional = true }), { "user", "{q}" } }
T.eq(#opt:messages { q = "a" }, 1, "an optional placeholder may be left out")
T.eq(P.chat { { role = "user", content = "{not a var}" } }:messages {}[1].content, "{not a var}",
  "a literal message is not a template")
T.raises(function() P.chat { { "robot", "x" } } end, "entry 1 has unknown role 'robot'", "bad chat role")
local cp = chat:partial { role = "poet" }
T.eq(cp:messages { history = {}, q = "x" }[1].content, "You are a poet.", "chat partial")

-- a memory works as the history value
do
  local mem = require("genlab.chain").memory()
  mem:add_user("one")
  mem:add_ai("two")
  local m = chat:messages { role = "r", history = mem, q = "three" }
  T.eq(#m, 4, "a memory fills the placeholder")
  T.eq(m[2].content .. "," .. m[3].content .. "," .. m[4].content, "one,two,three", "memory turns in order")
end

-- few-shot (string)
local ex = { { w = "happy", a = "sad" }, { w = "tall", a = "short", note = "extra keys are ignored" }, { w = "fast", a = "slow" } }
local fs = P.few_shot {
  examples = ex,
  example_prompt = P.template("Word: {w}\nAntonym: {a}"),
  prefix = "Give the antonym of every {kind}.",
  suffix = "Word: {input}\nAntonym:",
}
T.eq(table.concat(fs.variables, ","), "kind,input", "few-shot variables come from prefix and suffix")
T.eq(fs:format { kind = "word", input = "big" },
  "Give the antonym of every word.\n\nWord: happy\nAntonym: sad\n\nWord: tall\nAntonym: short\n\n"
  .. "Word: fast\nAntonym: slow\n\nWord: big\nAntonym:", "few-shot text: prefix, examples in order, suffix")
local fs2 = P.few_shot { examples = { { q = "1" }, { q = "2" } }, example_prompt = "Q{q}", suffix = "{x}", separator = "|" }
T.eq(fs2:format { x = "end" }, "Q1|Q2|end", "custom separator, empty prefix left out")
T.raises(function() P.few_shot { examples = { { w = "a" } }, example_prompt = "{w} {a}" } end, "missing variable: a",
  "an example missing a variable is an error at construction")
T.raises(function() P.few_shot { examples = {}, example_prompt = "x" } end, "examples must be a non-empty list",
  "no examples")

-- few-shot (chat turns) inside a chat prompt
local shots = P.few_shot {
  examples = { { i = "2+2", o = "4" }, { i = "2+3", o = "5" } },
  example_prompt = P.chat { { "human", "{i}" }, { "ai", "{o}" } },
}
local fchat = P.chat { { "system", "You add numbers." }, shots, { "human", "{q}" } }
T.eq(table.concat(fchat.variables, ","), "q", "few-shot turns add no variables")
local fm = fchat:messages { q = "3+3" }
local got = {}
for i, m in ipairs(fm) do got[i] = m.role:sub(1, 1) .. ":" .. m.content end
T.eq(table.concat(got, " "), "s:You add numbers. u:2+2 a:4 u:2+3 a:5 u:3+3", "few-shot turns in order")
T.raises(function() P.few_shot { examples = { { i = "1", o = "2" } }, example_prompt = P.chat { { "human", "{i}" } },
  prefix = "x" } end, "prefix, suffix, separator and partial apply to string examples", "chat few-shot takes no prefix")

-- a string template as chat content, and as messages
T.eq(P.chat { { "human", fs } }:messages { kind = "word", input = "up" }[1].content:sub(-17), "Word: up\nAntonym:",
  "a few-shot template as a message's content")
local tm = t:messages { topic = "a", n = 2 }
T.eq(#tm .. tm[1].role .. tm[1].content, "1userTell me about a in 2 words.", "a string template is one user message")

T.done()
