-- The workbench's own Lua (loaded by src/tui/app.c): finding the run and
-- model a job works on, status text, checkpoints, notebook lines, the
-- wrappers that send samples, images and yields to the UI, and the Probe
-- pane's side: probe{...} (gl.probe, then shown) and gl.probe.show(result).
-- Returns a function of (gl, ui), where ui holds the C callbacks of the workbench.
return function(...)
  local gl, ui = ...
  local Run = gl.train.Run
  local function is_run(v) return type(v) == 'table' and getmetatable(v) == Run end
  local function is_module(v) local ok, r = pcall(gl.nn.is_module, v) return ok and r end
  local function in_locals(co, pred)
    if type(co) ~= 'thread' then return nil end
    for level = 0, 100 do
      if not debug.getinfo(co, level, 'l') then break end
      for i = 1, 200 do
        local name, v = debug.getlocal(co, level, i)
        if not name then break end
        if pred(v) then return v end
      end
    end
  end
  local function scopes() return ui.nb and { ui.nb.env, _G } or { _G } end
  local function global(pred, prefer)
    for _, env in ipairs(scopes()) do local v = rawget(env, prefer) if pred(v) then return v end end
    for _, env in ipairs(scopes()) do for _, v in pairs(env) do if pred(v) then return v end end end
  end
  function ui.find_run(co) return in_locals(co, is_run) or global(is_run, 'run') end
  function ui.model_text(co)
    local m = ui.shown_model
    if not m then local r = in_locals(co, is_run) m = r and r.model or global(is_module, 'model') end
    return m and tostring(m) or 'no model yet: a global `model` or show(m) puts one here'
  end
  function ui.status(co)
    local parts, r = {}, in_locals(co, is_run)
    local name = r and r.name
    if not name then local runs = gl.metrics.runs() name = runs[#runs] end
    if name then
      local step, loss = gl.metrics.last(name, 'loss')
      if step then parts[#parts + 1] = ('%s step %d loss %.4f'):format(name, step, loss) end
      local _, tps = gl.metrics.last(name, 'tokens_per_s')
      if tps then parts[#parts + 1] = ('%.0f tok/s'):format(tps) end
    end
    parts[#parts + 1] = ('mem %.1f MiB'):format(gl.memory().live / 1048576)
    parts[#parts + 1] = ('%d thr'):format(gl.threads())
    return table.concat(parts, ' | ')
  end
  function ui.checkpoint(co)
    local r = ui.find_run(co)
    if not r then return 'no training run to save (gl.train makes one)' end
    local path = r.checkpoint or (r.name .. '.ckpt.safetensors')
    local ok, err = pcall(r.save, r, path)
    return ok and ('saved %s at step %d'):format(path, r.step_count) or ('checkpoint failed: ' .. tostring(err))
  end
  function ui.nb_lines(co)
    local out, nb = {}, ui.nb
    local function add(text, kind, i) out[#out + 1] = { text, kind, i } end
    for i, c in ipairs(nb.cells) do
      local head = c.kind == 'markdown' and ('[%d] text'):format(i) or ('[%d] %s%s%s'):format(i, c.status,
        c.elapsed and (' %.2fs'):format(c.elapsed) or '', c.stale and ' (stale)' or '')
      if c.title and c.title ~= '' then head = head .. '  ' .. c.title end
      add(head, 'head', i)
      local src = c.kind == 'markdown' and gl.notebook.markdown_text(c.source) or c.source
      for line in (src .. '\n'):gmatch('(.-)\n') do add(line, c.kind == 'markdown' and 'out' or 'code', i) end
      for _, o in ipairs(c.outputs) do
        local n = 0
        for line in (o.text:gsub('\n$', '') .. '\n'):gmatch('(.-)\n') do
          n = n + 1
          if n > 200 then add('  ...', 'info', i) break end
          add('  ' .. line, o.type == 'error' and 'error' or 'out', i)
        end
      end
      add('', 'out', i)
    end
    return out, #nb.cells
  end
  local nb_yield = gl.yield_ui
  function gl.yield_ui() if not ui.repl_yield() then return nb_yield() end end
  local gen = require 'genlab.generate'
  local generate = gen.generate
  local quiet = setmetatable({}, { __mode = 'k' }) -- threads whose generations stay out of the Samples pane
  function gen.generate(model, prompt, opts)
    if quiet[coroutine.running()] then return generate(model, prompt, opts) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    local user = o.on_token
    ui.sample_begin(type(prompt) == 'string' and prompt or '')
    o.on_token = function(text, id)
      if text then ui.sample(text) end
      if user then return user(text, id) end
    end
    return generate(model, prompt, o)
  end
  gl.generate = gen.generate
  local display = gl.display
  function gl.display(x, kind)
    if gl.is_tensor(x) and (kind == 'image' or (kind == nil and x:dtype() == 'u8')) then pcall(ui.image, x) end
    return display(x, kind)
  end
  -- The Probe pane: the result last shown, formatted by ui.probe_text for
  -- the pane's width each time it changes; columns side by side while each
  -- gets 20 characters, else the variants one under the other.
  local P = gl.probe
  local function is_probe(r) return type(r) == 'table' and type(r.variants) == 'table' and #r.variants > 0 end
  function P.show(r)
    if not is_probe(r) then error('probe.show: expected a gl.probe result (a table with variants)', 2) end
    ui.probe_result = r
    ui.show_probe()
  end
  function ui.probe_text(_, width, color)
    local r = ui.probe_result
    if not r then return nil end
    -- ASCII unless the locale (set from the environment by app.c) is UTF-8,
    -- like the panes' own ASCII fallback.
    local utf8_locale = (os.setlocale(nil, 'ctype') or ''):lower():find('utf%-?8') ~= nil
    local n, o = #r.variants, { width = width, color = color, ascii = not utf8_locale }
    if (width - 3 * (n - 1)) // n >= 20 then return P.format(r, o) end
    local parts = {}
    for i, v in ipairs(r.variants) do
      local ok, text = pcall(P.format, { expected = r.expected, variants = { v } }, o)
      parts[i] = ok and text or ('%s: the pane is too narrow (+ widens it)\n'):format(v.name)
    end
    return table.concat(parts, '\n')
  end
  local summary = { __tostring = function(r)
    local parts = {}
    for i, v in ipairs(r.variants) do parts[i] = ('%s %d tokens'):format(v.name, v.prompt_tokens) end
    return ('probe: %s (Probe pane, F8)'):format(table.concat(parts, ', '))
  end }
  -- probe{...}: gl.probe's options; shows the result in the Probe pane and returns it.
  function probe(opts)
    local co = coroutine.running()
    quiet[co] = true
    local ok, r = pcall(P, opts)
    quiet[co] = nil
    if not ok then error(r, 0) end
    P.show(r)
    return getmetatable(r) == nil and setmetatable(r, summary) or r
  end
  function show(x, title)
    if gl.is_tensor(x) then return ui.image(x, title) end
    if is_probe(x) then return P.show(x) end
    if is_module(x) then ui.shown_model = x return ui.show_model() end
    if type(x) == 'string' then ui.sample_begin('') return ui.sample(x) end
    error('show: expected a tensor (Image pane), a model (Model pane), a probe result (Probe pane) or a string (Samples pane)', 2)
  end
end
