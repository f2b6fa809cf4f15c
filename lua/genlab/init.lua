-- genlab: the Lua face of the engine. The C half is genlab.core; this file
-- adds the pure-Lua layer on top and returns one table.
local gl = require "genlab.core"
-- Registered before the submodules load, so they can `require "genlab"` too.
package.loaded.genlab = gl

require "genlab.nn"    -- extends gl.nn: Sequential, ModuleList, Lua modules
require "genlab.optim" -- extends gl.optim
gl.checkpoint = require "genlab.checkpoint"
require "genlab.tokenizer" -- extends gl.tokenizer
require "genlab.models"    -- extends gl.models: constructors, load, save
require "genlab.generate"  -- model:generate, logprobs, score
gl.data = require "genlab.data"
gl.train = require "genlab.train"
gl.metrics = require "genlab.metrics"
gl.notebook = require "genlab.notebook"
require "genlab.ema"        -- gl.ema
require "genlab.image"      -- gl.image
require "genlab.data_image" -- gl.data.mnist, gl.data.images
require "genlab.vae"        -- gl.models.vae
require "genlab.gan"        -- gl.models.dcgan
require "genlab.unet"       -- gl.models.unet
require "genlab.diffusion"  -- gl.diffusion
require "genlab.eval_image" -- gl.eval
require "genlab.prompt"     -- gl.prompt
require "genlab.llm"        -- gl.llm (gl.llm.openai loads on first use)
require "genlab.chain"      -- gl.chain
require "genlab.probe"      -- gl.probe

return gl
