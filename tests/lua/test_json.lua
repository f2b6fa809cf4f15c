-- gl.json: encoding and decoding through cJSON, and its errors.
local gl = require "genlab"
local T = require "tap"
local J = gl.json

T.eq(J.encode({ 1, 2, 3 }), "[1,2,3]", "a sequence encodes as an array")
T.eq(J.encode({ a = "x" }), '{"a":"x"}', "a string-keyed table encodes as an object")
T.eq(J.encode({}), "{}", "an empty table encodes as an object")
T.eq(J.encode(J.array {}), "[]", "gl.json.array marks an empty table as an array")
T.eq(J.encode({ J.null, true, false }), "[null,true,false]", "null and booleans")
T.eq(J.encode("tab\tquote\"nl\n"), '"tab\\tquote\\"nl\\n"', "strings are escaped")
T.eq(J.encode(42), "42", "integers print without a fraction")
T.eq(J.encode(0.1), "0.1", "floats print shortest round-trip")
T.eq(J.encode("é😀"), '"é😀"', "UTF-8 passes through")

local v = J.decode('{"n": 3, "f": 2.5, "s": "\\u00e9", "a": [1, null, {"k": []}], "o": {}}')
T.eq(math.type(v.n), "integer", "integral numbers decode as integers")
T.eq(v.f, 2.5, "fractions decode as floats")
T.eq(v.s, "é", "unicode escapes decode to UTF-8")
T.ok(v.a[2] == J.null, "null decodes to gl.json.null")
T.eq(J.encode(v.a[3].k), "[]", "a decoded empty array re-encodes as []")
T.eq(next(v.o), nil, "an empty object decodes to an empty table")

local roundtrip = { model = "m", messages = { { role = "user", content = "{\"json\": [1,2]}" } }, stream = false }
local back = J.decode(J.encode(roundtrip))
T.eq(back.messages[1].content, roundtrip.messages[1].content, "round trip keeps nested strings")
T.eq(back.stream, false, "round trip keeps false")

T.raises(function() J.decode('{"a":1,}') end, "json.decode: invalid JSON", "a trailing comma is an error")
T.raises(function() J.decode('{"a" 1}') end, "at byte 6", "the error names the byte")
T.raises(function() J.decode("") end, "empty text", "empty text is an error")
T.raises(function() J.decode("[1] x") end, "json.decode", "trailing text is an error")
T.raises(function() J.decode("[1]\0") end, "NUL", "an embedded NUL is an error")
local cyc = {}
cyc.self = cyc
T.raises(function() J.encode(cyc) end, "a cycle", "a cycle is an error, not a crash")
T.raises(function() J.encode({ f = print }) end, "function has no JSON form", "functions are refused")
T.raises(function() J.encode(0 / 0) end, "NaN", "NaN is refused")
T.raises(function() J.encode(math.huge) end, "infinity", "infinity is refused")
T.raises(function() J.encode(1 << 60) end, "2^53", "integers beyond 2^53 are refused")
T.raises(function() J.encode({}, { pretty = true }) end, "unknown option 'pretty'", "unknown options are errors")
T.ok(J.encode({ a = { 1 } }, { indent = true }):find("\n"), "indent spreads over lines")

T.done()
