-- Chat templates (lua/genlab/chat_template.lua): exact prompt strings for
-- ChatML, Llama-2 [INST] and plain "Role: text", stop strings, role aliases
-- and the errors for bad input.
local T = require "tap"
require "genlab"
local ct = require "genlab.chat_template"

local conv = {
  { role = "system", content = "Be brief." },
  { role = "user", content = "Hi" },
  { role = "assistant", content = "Hello!" },
  { role = "user", content = "2+2?" },
}

T.eq(table.concat(ct.names(), ","), "chatml,llama2,plain", "names() lists the three templates")

local text, stops = ct.render(conv, "chatml")
T.eq(text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
  .. "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
  "chatml: turns and the assistant opening")
T.eq(table.concat(stops, "|"), "<|im_end|>|<|im_start|>", "chatml stop strings")
T.eq(ct.render(conv), text, "chatml is the default")

text, stops = ct.render(conv, "llama2")
T.eq(text, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]",
  "llama2: system joins the first user turn, assistant closed with </s>")
T.eq(table.concat(stops, "|"), "</s>|[INST]", "llama2 stop strings")
T.eq(ct.render({ { role = "user", content = "  Hi \n" } }, "llama2"), "<s>[INST] Hi [/INST]",
  "llama2 without system, content stripped as in Meta's format")

text, stops = ct.render(conv, "plain")
T.eq(text, "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: 2+2?\nAssistant:", "plain Role: text lines")
T.eq(table.concat(stops, "|"), "\nUser:|\nSystem:", "plain stop strings")
T.eq(ct.render({ { role = "user", content = "Hi" } }, "plain", { generation = false }), "User: Hi\n",
  "generation = false leaves out the assistant opening")

T.eq(ct.render({ { role = "human", content = "a" }, { role = "ai", content = "b" } }, "plain", { generation = false }),
  "User: a\nAssistant: b\n", "human and ai are aliases of user and assistant")

T.raises(function() ct.render(conv, "vicuna") end, "unknown template 'vicuna'", "unknown template names itself")
T.raises(function() ct.render({ { role = "robot", content = "x" } }) end, "message 1 has unknown role 'robot'",
  "unknown role is named with its position")
T.raises(function() ct.render({ { role = "user" } }) end, "message 1 (user) content must be a string",
  "missing content")
T.raises(function() ct.render({}) end, "no messages", "empty message list")
T.raises(function() ct.render({ { role = "user", content = "a" }, { role = "user", content = "b" } }, "llama2") end,
  "message 2 is user, expected assistant", "llama2 needs alternating turns")
T.raises(function() ct.render({ { role = "user", content = "a" }, { role = "assistant", content = "b" } }, "llama2") end,
  "the last message must be the user's", "llama2 cannot open an answer after an assistant turn")
T.raises(function() ct.render(conv, "chatml", { generaton = true }) end, "unknown option 'generaton'",
  "unknown option")

T.eq(ct.default_for({}), "plain", "default_for: a model without tokenizer reads plain text")
T.eq(ct.default_for({ tokenizer = { id = function(_, p) return p == "<|im_start|>" and 7 or nil end } }), "chatml",
  "default_for: a tokenizer with <|im_start|> gets chatml")

T.done()
