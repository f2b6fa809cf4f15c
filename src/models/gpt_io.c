/* GPT checkpoints: Hugging Face GPT-2 / GPT-Neo / LLaMA directories,
 * llama2.c .bin files and genlab's own safetensors (see gpt_io.h). */
#include "models/gpt_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "io/atomic.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "text/tokenizer.h"

#define FORMAT "genlab-gpt"
#define VERSION "1"

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The directory part of path ("." when none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return dupstr(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* A new GPT without disturbing the genlab RNG (its initial values are overwritten). */
static gl_module *fresh(const gl_gpt_config *c)
{
    gl_rng_state rs;
    gl_rng_get(&rs);
    gl_module *m = gl_gpt_new(c);
    gl_rng_set(&rs);
    return m;
}

/* --- config JSON (genlab's field names) ---------------------------------------------- */

char *gl_gpt_config_to_json(const gl_gpt_config *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "arch", gl_gpt_arch_name(c->arch));
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(o, "block_size", (double)c->block_size);
    cJSON_AddNumberToObject(o, "n_layer", (double)c->n_layer);
    cJSON_AddNumberToObject(o, "n_head", (double)c->n_head);
    cJSON_AddNumberToObject(o, "n_kv_head", (double)c->n_kv_head);
    cJSON_AddNumberToObject(o, "n_embd", (double)c->n_embd);
    cJSON_AddNumberToObject(o, "n_hidden", (double)c->n_hidden);
    cJSON_AddNumberToObject(o, "dropout", (double)c->dropout);
    cJSON_AddNumberToObject(o, "norm_eps", (double)c->norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", (double)c->rope_theta);
    cJSON_AddBoolToObject(o, "bias", c->bias);
    cJSON_AddBoolToObject(o, "tie_head", c->tie_head);
    cJSON_AddBoolToObject(o, "gelu_tanh", c->gelu_tanh);
    cJSON_AddNumberToObject(o, "window", (double)c->window);
    char bits[24];
    snprintf(bits, sizeof bits, "%llu", (unsigned long long)c->local_layers);
    cJSON_AddStringToObject(o, "local_layers", bits);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Integer field key of o into *v (left alone when absent and optional). */
static gl_status json_int(const cJSON *o, const char *key, bool required, int64_t *v, const char *what)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return gl_error(GL_EFORMAT, "load: %s: '%s' is missing", what, key);
        return GL_OK;
    }
    double d = cJSON_GetNumberValue(it);
    /* the range first: casting 1e300 to int64_t is undefined */
    if (!cJSON_IsNumber(it) || !(d >= -9e15 && d <= 9e15) || d != (double)(int64_t)d)
        return gl_error(GL_EFORMAT, "load: %s: '%s' must be an integer", what, key);
    *v = (int64_t)d;
    return GL_OK;
}

static gl_status json_float(const cJSON *o, const char *key, float *v, const char *what)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) return GL_OK;
    if (!cJSON_IsNumber(it)) return gl_error(GL_EFORMAT, "load: %s: '%s' must be a number", what, key);
    *v = (float)cJSON_GetNumberValue(it);
    return GL_OK;
}

static gl_status json_bool(const cJSON *o, const char *key, bool *v, const char *what)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) return GL_OK;
    if (!cJSON_IsBool(it)) return gl_error(GL_EFORMAT, "load: %s: '%s' must be true or false", what, key);
    *v = cJSON_IsTrue(it);
    return GL_OK;
}

/* Re-raises the current error as "load: PATH: message" (the message is copied first: it lives in the same buffer). */
static gl_status with_path(const char *path)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", gl_error_message());
    return gl_error(gl_error_code(), "load: %s: %s", path, msg);
}

/* what names the source in errors. */
static gl_status config_from_json(const char *text, gl_gpt_config *c, const char *what)
{
    memset(c, 0, sizeof *c);
    cJSON *o = cJSON_Parse(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return gl_error(GL_EFORMAT, "load: %s is not a JSON object", what);
    }
    gl_status st = GL_OK;
    const char *arch = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "arch"));
    if (!arch || (strcmp(arch, "gpt2") && strcmp(arch, "neo") && strcmp(arch, "llama")))
        st = gl_error(GL_EFORMAT, "load: %s: 'arch' must be gpt2, neo or llama", what);
    else
        c->arch = !strcmp(arch, "gpt2") ? GL_GPT_GPT2 : !strcmp(arch, "neo") ? GL_GPT_NEO : GL_GPT_LLAMA;
    if (st == GL_OK) st = json_int(o, "vocab_size", true, &c->vocab_size, what);
    if (st == GL_OK) st = json_int(o, "block_size", true, &c->block_size, what);
    if (st == GL_OK) st = json_int(o, "n_layer", true, &c->n_layer, what);
    if (st == GL_OK) st = json_int(o, "n_head", true, &c->n_head, what);
    if (st == GL_OK) st = json_int(o, "n_kv_head", false, &c->n_kv_head, what);
    if (st == GL_OK) st = json_int(o, "n_embd", true, &c->n_embd, what);
    if (st == GL_OK) st = json_int(o, "n_hidden", false, &c->n_hidden, what);
    if (st == GL_OK) st = json_int(o, "window", false, &c->window, what);
    if (st == GL_OK) st = json_float(o, "dropout", &c->dropout, what);
    if (st == GL_OK) st = json_float(o, "norm_eps", &c->norm_eps, what);
    if (st == GL_OK) st = json_float(o, "rope_theta", &c->rope_theta, what);
    if (st == GL_OK) st = json_bool(o, "bias", &c->bias, what);
    if (st == GL_OK) st = json_bool(o, "tie_head", &c->tie_head, what);
    if (st == GL_OK) st = json_bool(o, "gelu_tanh", &c->gelu_tanh, what);
    const char *bits = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "local_layers"));
    if (st == GL_OK && bits) c->local_layers = strtoull(bits, NULL, 10);
    cJSON_Delete(o);
    if (st == GL_OK && gl_gpt_config_finish(c) != GL_OK) st = with_path(what);
    return st;
}

gl_status gl_gpt_config_from_json(const char *text, gl_gpt_config *c)
{
    return config_from_json(text, c, "genlab config");
}

/* --- genlab checkpoint ---------------------------------------------------------------- */

gl_status gl_gpt_save(gl_module *m, const char *path, const char *tokenizer)
{
    const gl_gpt_config *c = gl_gpt_config_of(m);
    if (!c) return gl_error(GL_EINVAL, "save: not a GPT model");
    gl_tensor_list l = GL_TENSOR_LIST_INIT;
    gl_status st = gl_module_named_parameters(m, &l); /* a tied head is stored once */
    if (st == GL_OK) st = gl_module_named_buffers(m, &l);
    char *cj = gl_gpt_config_to_json(c);
    const char **names = malloc((size_t)(l.n + 1) * sizeof *names);
    gl_tensor **ts = malloc((size_t)(l.n + 1) * sizeof *ts);
    if (st == GL_OK && (!cj || !names || !ts)) st = gl_error(GL_ENOMEM, "save: out of memory");
    if (st == GL_OK) {
        for (int64_t i = 0; i < l.n; i++) {
            names[i] = l.items[i].name;
            ts[i] = l.items[i].t;
        }
        const char *keys[4] = {"format", "version", "config", "tokenizer"};
        const char *vals[4] = {FORMAT, VERSION, cj, tokenizer};
        st = gl_safetensors_save(path, l.n, names, ts, tokenizer ? 4 : 3, keys, vals);
    }
    free(names);
    free(ts);
    free(cj);
    gl_tensor_list_clear(&l);
    return st;
}

static const char *meta(const gl_safetensors *st, const char *key)
{
    for (int64_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

/* Loads tensors by the model's own names; a tied head may be absent. */
static gl_module *load_genlab(const char *path, gl_safetensors *st, gl_gpt_load_info *info)
{
    const char *cj = meta(st, "config"), *ver = meta(st, "version");
    if (!cj) return gl_error_null(GL_EFORMAT, "load: %s: genlab checkpoint without a 'config' in its metadata", path);
    if (!ver || strcmp(ver, VERSION))
        return gl_error_null(GL_EFORMAT, "load: %s: genlab-gpt version %s is not supported (expected %s)", path,
                             ver ? ver : "(missing)", VERSION);
    gl_gpt_config c;
    if (config_from_json(cj, &c, path) != GL_OK) return NULL;
    gl_module *m = fresh(&c);
    if (!m) return NULL;
    gl_tensor_list src = GL_TENSOR_LIST_INIT, missing = GL_TENSOR_LIST_INIT, unexpected = GL_TENSOR_LIST_INIT;
    gl_status s = GL_OK;
    for (int64_t i = 0; i < st->n && s == GL_OK; i++) s = gl_tensor_list_add(&src, st->names[i], st->tensors[i]);
    if (s == GL_OK) s = gl_module_load_state_dict(m, &src, false, &missing, &unexpected);
    char shown[64]; /* the file's tensor name, on one line */
    if (s == GL_OK && unexpected.n)
        s = gl_error(GL_EFORMAT, "load: %s: unexpected tensor '%s' for this config", path,
                     gl_text_show(unexpected.items[0].name, strlen(unexpected.items[0].name), shown, sizeof shown));
    for (int64_t i = 0; s == GL_OK && i < missing.n; i++)
        if (!(c.tie_head && !strcmp(missing.items[i].name, "lm_head.weight")))
            s = gl_error(GL_EFORMAT, "load: %s: tensor '%s' is missing", path, missing.items[i].name);
    gl_tensor_list_clear(&src);
    gl_tensor_list_clear(&missing);
    gl_tensor_list_clear(&unexpected);
    if (s != GL_OK) {
        gl_module_release(m);
        return NULL;
    }
    const char *tok = meta(st, "tokenizer");
    if (info && tok && !(info->tokenizer = dupstr(tok))) {
        gl_module_release(m);
        return gl_error_null(GL_ENOMEM, "load: out of memory");
    }
    return m;
}

/* --- Hugging Face ---------------------------------------------------------------------- */

/* Reads a whole small text file (malloc'd, NUL-terminated). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return gl_error_null(GL_EIO, "load: %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > ((size_t)64 << 20)) {
                free(buf);
                fclose(f);
                return gl_error_null(GL_EFORMAT, "load: %s: too large for a config file", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return gl_error_null(GL_ENOMEM, "load: out of memory");
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, 4096, f);
        n += k;
        if (k < 4096) break;
    }
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* The config of an HF config.json (GPT2, GPT-Neo, LLaMA). */
static gl_status hf_config(const char *path, gl_gpt_config *c)
{
    char shown[64]; /* a string of the file in an error message, one line */
#define SHOW(s) gl_text_show((s), strlen(s), shown, sizeof shown)
    char *text = read_text(path);
    if (!text) return gl_error_code();
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return gl_error(GL_EFORMAT, "load: %s: not a JSON object", path);
    }
    memset(c, 0, sizeof *c);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "model_type"));
    gl_status st = GL_OK;
    const char *act = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "activation_function"));
    bool tie = true;
    if (type && !strcmp(type, "gpt2")) {
        c->arch = GL_GPT_GPT2;
        c->bias = true;
        if (st == GL_OK) st = json_int(o, "vocab_size", true, &c->vocab_size, path);
        if (st == GL_OK) st = json_int(o, "n_positions", true, &c->block_size, path);
        if (st == GL_OK) st = json_int(o, "n_layer", true, &c->n_layer, path);
        if (st == GL_OK) st = json_int(o, "n_head", true, &c->n_head, path);
        if (st == GL_OK) st = json_int(o, "n_embd", true, &c->n_embd, path);
        if (st == GL_OK) st = json_int(o, "n_inner", false, &c->n_hidden, path);
        if (st == GL_OK) st = json_float(o, "layer_norm_epsilon", &c->norm_eps, path);
    } else if (type && !strcmp(type, "gpt_neo")) {
        c->arch = GL_GPT_NEO;
        c->bias = true;
        if (st == GL_OK) st = json_int(o, "vocab_size", true, &c->vocab_size, path);
        if (st == GL_OK) st = json_int(o, "max_position_embeddings", true, &c->block_size, path);
        if (st == GL_OK) st = json_int(o, "num_layers", true, &c->n_layer, path);
        if (st == GL_OK) st = json_int(o, "num_heads", true, &c->n_head, path);
        if (st == GL_OK) st = json_int(o, "hidden_size", true, &c->n_embd, path);
        if (st == GL_OK) st = json_int(o, "intermediate_size", false, &c->n_hidden, path);
        if (st == GL_OK) st = json_int(o, "window_size", false, &c->window, path);
        if (st == GL_OK) st = json_float(o, "layer_norm_epsilon", &c->norm_eps, path);
        /* attention_layers: ["global", "local", ...]; else expand attention_types [[["global","local"], n], ...] */
        const cJSON *al = cJSON_GetObjectItemCaseSensitive(o, "attention_layers");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "attention_types");
        int64_t k = 0;
        if (cJSON_IsArray(al)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, al)
            {
                const char *s = cJSON_GetStringValue(it);
                if (s && !strcmp(s, "local") && k < 64) c->local_layers |= (uint64_t)1 << k;
                k++;
            }
        } else {
            const cJSON *grp;
            cJSON_ArrayForEach(grp, at)
            {
                const cJSON *kinds = cJSON_GetArrayItem(grp, 0), *it;
                /* clamped before the cast (a missing count is NaN); past 4096 layers config_finish refuses anyway */
                double reps = cJSON_GetNumberValue(cJSON_GetArrayItem(grp, 1));
                int64_t n = reps >= 0 ? (int64_t)fmin(reps, 4097) : 0;
                for (int64_t r = 0; r < n && k <= 4096; r++) cJSON_ArrayForEach(it, kinds)
                    {
                        const char *s = cJSON_GetStringValue(it);
                        if (s && !strcmp(s, "local") && k < 64) c->local_layers |= (uint64_t)1 << k;
                        k++;
                    }
            }
        }
        if (st == GL_OK && (k || cJSON_IsArray(al) || cJSON_IsArray(at)) && k != c->n_layer)
            st = gl_error(GL_EFORMAT, "load: %s: attention layers list %lld entries for %lld layers", path,
                          (long long)k, (long long)c->n_layer);
    } else if (type && !strcmp(type, "llama")) {
        c->arch = GL_GPT_LLAMA;
        tie = false;
        if (st == GL_OK) st = json_int(o, "vocab_size", true, &c->vocab_size, path);
        if (st == GL_OK) st = json_int(o, "max_position_embeddings", true, &c->block_size, path);
        if (st == GL_OK) st = json_int(o, "num_hidden_layers", true, &c->n_layer, path);
        if (st == GL_OK) st = json_int(o, "num_attention_heads", true, &c->n_head, path);
        if (st == GL_OK) st = json_int(o, "num_key_value_heads", false, &c->n_kv_head, path);
        if (st == GL_OK) st = json_int(o, "hidden_size", true, &c->n_embd, path);
        if (st == GL_OK) st = json_int(o, "intermediate_size", true, &c->n_hidden, path);
        if (st == GL_OK) st = json_float(o, "rms_norm_eps", &c->norm_eps, path);
        if (st == GL_OK) st = json_float(o, "rope_theta", &c->rope_theta, path);
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
        bool ab = false;
        if (st == GL_OK) st = json_bool(o, "attention_bias", &ab, path);
        if (st == GL_OK && rs && !cJSON_IsNull(rs))
            st = gl_error(GL_EFORMAT, "load: %s: rope_scaling is not supported", path);
        if (st == GL_OK && ab) st = gl_error(GL_EFORMAT, "load: %s: attention_bias is not supported", path);
        act = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "hidden_act"));
        if (st == GL_OK && act && strcmp(act, "silu"))
            st = gl_error(GL_EFORMAT, "load: %s: hidden_act '%s' is not supported (silu)", path, SHOW(act));
        act = NULL;
    } else {
        st = gl_error(GL_EFORMAT, "load: %s: model_type '%s' is not supported (gpt2, gpt_neo or llama)", path,
                      type ? SHOW(type) : "(missing)");
    }
    if (st == GL_OK && act) {
        if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_fast"))
            c->gelu_tanh = true;
        else if (strcmp(act, "gelu"))
            st = gl_error(GL_EFORMAT, "load: %s: activation_function '%s' is not supported (gelu, gelu_new)", path,
                          SHOW(act));
    }
    if (st == GL_OK) st = json_bool(o, "tie_word_embeddings", &tie, path);
    c->tie_head = tie;
    cJSON_Delete(o);
    if (st == GL_OK && gl_gpt_config_finish(c) != GL_OK) st = with_path(path);
    return st;
#undef SHOW
}

/* Finds a tensor of the file by its HF name, with or without the top prefix,
 * marking it used. */
typedef struct {
    const char *file;
    gl_safetensors *st;
    bool *used;
} hf_src;

static gl_tensor *hf_find(hf_src *s, const char *name)
{
    const char *dot = strchr(name, '.');
    for (int64_t i = 0; i < s->st->n; i++)
        if (!strcmp(s->st->names[i], name) || (dot && !strcmp(s->st->names[i], dot + 1))) {
            s->used[i] = true;
            return s->st->tensors[i];
        }
    return NULL;
}

static gl_status shape_error(hf_src *s, const char *name, const gl_tensor *t, int ndim, const int64_t *want)
{
    char a[96], b[96];
    return gl_error(GL_EFORMAT, "load: %s: '%s' has shape %s, config expects %s", s->file, name,
                    gl_tensor_shape_str(t, a, sizeof a), gl_shape_str(ndim, want, b, sizeof b));
}

/* Copies rows..rows+t->shape[0] of dst from the file tensor name, transposed when conv1d. */
static gl_status hf_copy(hf_src *s, const char *name, gl_tensor *dst, int64_t row0, int64_t rows, bool conv1d)
{
    gl_tensor *t = hf_find(s, name);
    if (!t) return gl_error(GL_EFORMAT, "load: %s: tensor '%s' is missing", s->file, name);
    int64_t cols = dst->ndim == 2 ? dst->shape[1] : 1;
    int64_t want[2] = {conv1d ? cols : rows, conv1d ? rows : cols};
    int wnd = dst->ndim == 2 ? 2 : 1;
    if (t->dtype != GL_F32 || !gl_shape_equal(t->ndim, t->shape, wnd, want)) return shape_error(s, name, t, wnd, want);
    float *d = gl_tensor_f32(dst) + row0 * cols;
    const float *x = gl_tensor_f32(t);
    if (!conv1d) {
        memcpy(d, x, (size_t)(rows * cols) * sizeof *d);
        return GL_OK;
    }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j < rows; j++) d[j * cols + i] = x[i * rows + j];
    return GL_OK;
}

/* Before the model is built: config.json must agree with the file's token
 * embedding, and cannot claim more weights than the file holds, so a wrong or
 * hostile config fails with a message instead of allocating (and randomly
 * initializing) gigabytes. need is a lower bound of every arch's weights:
 * embeddings, one [C, C] attention matrix and two [C, F] MLP ones per layer. */
static gl_status hf_precheck(hf_src *s, const gl_gpt_config *c)
{
    bool llama = c->arch == GL_GPT_LLAMA;
    const char *emb = llama ? "model.embed_tokens.weight" : "transformer.wte.weight";
    gl_tensor *t = hf_find(s, emb);
    int64_t want[2] = {c->vocab_size, c->n_embd};
    if (!t) return gl_error(GL_EFORMAT, "load: %s: tensor '%s' is missing", s->file, emb);
    if (!gl_shape_equal(t->ndim, t->shape, 2, want)) return shape_error(s, emb, t, 2, want);
    double C = (double)c->n_embd, have = 0;
    double need = (double)c->vocab_size * C + (llama ? 0 : (double)c->block_size * C) +
                  (double)c->n_layer * (C * C + 2 * C * (double)c->n_hidden);
    for (int64_t i = 0; i < s->st->n; i++) have += (double)s->st->tensors[i]->numel;
    if (need > have)
        return gl_error(GL_EFORMAT,
                        "load: %s: config.json implies at least %.0f weights but the file holds %.0f (wrong config.json?)",
                        s->file, need, have);
    return GL_OK;
}

static bool ignorable(const char *name)
{
    return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
           ends_with(name, "rotary_emb.inv_freq") || ends_with(name, ".attention.bias") ||
           ends_with(name, ".attention.masked_bias");
}

/* Fills every tensor of m from the HF file. */
static gl_status hf_fill(gl_module *m, hf_src *s)
{
    const gl_gpt_config *c = gl_gpt_config_of(m);
    gl_tensor_list sd = GL_TENSOR_LIST_INIT;
    gl_status st = gl_module_state_dict(m, &sd);
    int64_t C = c->n_embd;
    char name[256];
    for (int64_t i = 0; i < sd.n && st == GL_OK; i++) {
        const char *n = sd.items[i].name;
        gl_tensor *dst = sd.items[i].t;
        int64_t rows = dst->shape[0];
        if (!strcmp(n, "lm_head.weight")) {
            if (c->tie_head) continue; /* shares the embedding */
            st = hf_copy(s, n, dst, 0, rows, false);
            continue;
        }
        if (c->arch == GL_GPT_LLAMA) {
            st = hf_copy(s, n, dst, 0, rows, false);
            continue;
        }
        /* GPT-2 family: "transformer.h.N.<rest>" */
        long long layer;
        int off = 0;
        bool weight2d = dst->ndim == 2;
        if (sscanf(n, "transformer.h.%lld.%n", &layer, &off) != 1 || !off) {
            st = hf_copy(s, n, dst, 0, rows, false); /* wte, wpe, ln_f */
            continue;
        }
        const char *rest = n + off;
        if (c->arch == GL_GPT_GPT2) {
            bool conv = weight2d; /* every 2-D tensor in a GPT-2 block is a Conv1D weight */
            st = hf_copy(s, n, dst, 0, rows, conv);
            continue;
        }
        /* GPT-Neo: q/k/v/out_proj under attn.attention, MLP as nn.Linear. */
        if (!strcmp(rest, "attn.c_attn.weight")) {
            const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
            for (int k = 0; k < 3 && st == GL_OK; k++) {
                snprintf(name, sizeof name, "transformer.h.%lld.attn.attention.%s.weight", layer, qkv[k]);
                st = hf_copy(s, name, dst, k * C, C, false);
            }
        } else if (!strncmp(rest, "attn.c_proj.", 12)) {
            snprintf(name, sizeof name, "transformer.h.%lld.attn.attention.out_proj.%s", layer, rest + 12);
            st = hf_copy(s, name, dst, 0, rows, false);
        } else {
            st = hf_copy(s, n, dst, 0, rows, false);
        }
    }
    for (int64_t i = 0; i < s->st->n && st == GL_OK; i++) {
        const char *name = s->st->names[i];
        if (s->used[i] || ignorable(name) || (c->tie_head && !strcmp(name, "lm_head.weight"))) continue;
        char shown[64]; /* the file's tensor name, on one line */
        st = gl_error(GL_EFORMAT, "load: %s: unexpected tensor '%s' for a %s model (wrong config.json?)", s->file,
                      gl_text_show(name, strlen(name), shown, sizeof shown), gl_gpt_arch_name(c->arch));
    }
    gl_tensor_list_clear(&sd);
    return st;
}

gl_module *gl_gpt_load_hf(const char *path)
{
    char *dir = is_dir(path) ? dupstr(path) : dir_of(path);
    char *cfg_path = dir ? join(dir, "config.json") : NULL;
    bool given = !is_dir(path) && !ends_with(path, ".json"); /* the weights file itself */
    char *st_path = dir ? (given ? dupstr(path) : join(dir, "model.safetensors")) : NULL;
    gl_module *m = NULL;
    gl_safetensors st = {0};
    bool *used = NULL;
    gl_gpt_config c;
    if (!cfg_path || !st_path) {
        gl_error(GL_ENOMEM, "load: out of memory");
        goto done;
    }
    struct stat sb;
    if (stat(st_path, &sb) != 0) {
        char *idx = join(dir, "model.safetensors.index.json");
        bool sharded = idx && stat(idx, &sb) == 0;
        free(idx);
        gl_error(GL_EIO, "load: %s: %s%s", st_path, strerror(errno),
                 sharded ? " (sharded checkpoints are not supported: merge the shards into one file)" : "");
        goto done;
    }
    if (hf_config(cfg_path, &c) != GL_OK || gl_safetensors_load(st_path, &st) != GL_OK) goto done;
    if (!(used = calloc((size_t)st.n + 1, 1))) {
        gl_error(GL_ENOMEM, "load: out of memory");
        goto done;
    }
    const char *base = strrchr(st_path, '/');
    hf_src src = {base ? base + 1 : st_path, &st, used};
    if (hf_precheck(&src, &c) != GL_OK || !(m = fresh(&c))) goto done;
    if (hf_fill(m, &src) != GL_OK) {
        gl_module_release(m);
        m = NULL;
    }
done:
    free(used);
    gl_safetensors_free(&st);
    free(dir);
    free(cfg_path);
    free(st_path);
    return m;
}

/* --- llama2.c ---------------------------------------------------------------------------- */

/* dst[H*HS, in] (HF halves) from src (Meta interleaved pairs): HF row h*HS + s*HS/2 + i = Meta row h*HS + 2i + s. */
static void unpermute(float *dst, const float *src, int64_t H, int64_t HS, int64_t in)
{
    for (int64_t h = 0; h < H; h++)
        for (int64_t s = 0; s < 2; s++)
            for (int64_t i = 0; i < HS / 2; i++)
                memcpy(dst + (h * HS + s * HS / 2 + i) * in, src + (h * HS + 2 * i + s) * in, (size_t)in * sizeof *dst);
}

gl_module *gl_gpt_load_llama2c(const char *path)
{
    gl_llama2c_config lc;
    gl_tensor_list l = GL_TENSOR_LIST_INIT;
    if (gl_llama2c_load(path, &lc, &l) != GL_OK) return NULL;
    gl_gpt_config c = {
        .arch = GL_GPT_LLAMA,
        .vocab_size = lc.vocab_size,
        .block_size = lc.seq_len,
        .n_layer = lc.n_layers,
        .n_head = lc.n_heads,
        .n_kv_head = lc.n_kv_heads,
        .n_embd = lc.dim,
        .n_hidden = lc.hidden_dim,
        .tie_head = lc.shared_classifier,
    };
    gl_module *m = fresh(&c);
    if (!m) {
        gl_tensor_list_clear(&l);
        with_path(path);
        return NULL;
    }
    int64_t D = c.n_embd, HS = D / c.n_head, KVD = c.n_kv_head * HS, F = c.n_hidden;
    char name[160];
#define DST(...) (snprintf(name, sizeof name, __VA_ARGS__), gl_tensor_f32(gl_module_find_tensor(m, name)))
#define SRC(n) gl_tensor_f32(gl_tensor_list_find(&l, n))
    memcpy(DST("model.embed_tokens.weight"), SRC("token_embedding_table"), (size_t)(c.vocab_size * D) * 4);
    memcpy(DST("model.norm.weight"), SRC("rms_final_weight"), (size_t)D * 4);
    if (!lc.shared_classifier) memcpy(DST("lm_head.weight"), SRC("wcls"), (size_t)(c.vocab_size * D) * 4);
    for (int64_t i = 0; i < c.n_layer; i++) {
        long long li = (long long)i;
        memcpy(DST("model.layers.%lld.input_layernorm.weight", li), SRC("rms_att_weight") + i * D, (size_t)D * 4);
        memcpy(DST("model.layers.%lld.post_attention_layernorm.weight", li), SRC("rms_ffn_weight") + i * D,
               (size_t)D * 4);
        unpermute(DST("model.layers.%lld.self_attn.q_proj.weight", li), SRC("wq") + i * D * D, c.n_head, HS, D);
        unpermute(DST("model.layers.%lld.self_attn.k_proj.weight", li), SRC("wk") + i * KVD * D, c.n_kv_head, HS, D);
        memcpy(DST("model.layers.%lld.self_attn.v_proj.weight", li), SRC("wv") + i * KVD * D, (size_t)(KVD * D) * 4);
        memcpy(DST("model.layers.%lld.self_attn.o_proj.weight", li), SRC("wo") + i * D * D, (size_t)(D * D) * 4);
        memcpy(DST("model.layers.%lld.mlp.gate_proj.weight", li), SRC("w1") + i * F * D, (size_t)(F * D) * 4);
        memcpy(DST("model.layers.%lld.mlp.down_proj.weight", li), SRC("w2") + i * D * F, (size_t)(D * F) * 4);
        memcpy(DST("model.layers.%lld.mlp.up_proj.weight", li), SRC("w3") + i * F * D, (size_t)(F * D) * 4);
    }
#undef DST
#undef SRC
    gl_tensor_list_clear(&l);
    return m;
}

/* --- dispatch ------------------------------------------------------------------------------ */

void gl_gpt_load_info_free(gl_gpt_load_info *info)
{
    if (!info) return;
    free(info->tokenizer);
    free(info->dir);
    memset(info, 0, sizeof *info);
}

/* A safetensors file whatever its name: an 8-byte header length below the file size, then '{'. */
static bool looks_safetensors(const char *path, int64_t size)
{
    unsigned char b[9];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool ok = fread(b, 9, 1, f) == 1;
    fclose(f);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    return ok && b[8] == '{' && n + 8 <= (uint64_t)size;
}

gl_module *gl_gpt_load(const char *path, gl_gpt_load_info *info)
{
    gl_gpt_load_info dummy = {0};
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    gl_module *m = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return gl_error_null(GL_EIO, "load: %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode) || ends_with(path, ".json")) {
        snprintf(info->format, sizeof info->format, "hf");
        m = gl_gpt_load_hf(path);
    } else if (ends_with(path, ".safetensors") || looks_safetensors(path, (int64_t)sb.st_size)) {
        gl_safetensors st = {0};
        if (gl_safetensors_load(path, &st) != GL_OK) return NULL;
        const char *fmt = meta(&st, "format");
        if (fmt && !strcmp(fmt, FORMAT)) {
            snprintf(info->format, sizeof info->format, "genlab");
            m = load_genlab(path, &st, info);
            gl_safetensors_free(&st);
        } else {
            gl_safetensors_free(&st); /* the HF path reads it again with its config */
            snprintf(info->format, sizeof info->format, "hf");
            m = gl_gpt_load_hf(path);
        }
    } else {
        snprintf(info->format, sizeof info->format, "llama2c");
        m = gl_gpt_load_llama2c(path);
    }
    if (m && !(info->dir = S_ISDIR(sb.st_mode) ? dupstr(path) : dir_of(path))) {
        gl_module_release(m);
        m = gl_error_null(GL_ENOMEM, "load: out of memory");
    }
    if (!m) gl_gpt_load_info_free(info);
    gl_gpt_load_info_free(&dummy);
    return m;
}

/* --- export to Hugging Face ------------------------------------------------------------------- */

static gl_status write_json(const char *path, cJSON *o)
{
    char *s = cJSON_Print(o);
    if (!s) return gl_error(GL_ENOMEM, "export: out of memory");
    gl_status st = gl_atomic_write_file(path, s, strlen(s));
    free(s);
    return st;
}

static cJSON *hf_config_json(const gl_gpt_config *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (c->arch == GL_GPT_LLAMA) {
        cJSON *a = cJSON_AddArrayToObject(o, "architectures");
        cJSON_AddItemToArray(a, cJSON_CreateString("LlamaForCausalLM"));
        cJSON_AddStringToObject(o, "model_type", "llama");
        cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
        cJSON_AddNumberToObject(o, "max_position_embeddings", (double)c->block_size);
        cJSON_AddNumberToObject(o, "hidden_size", (double)c->n_embd);
        cJSON_AddNumberToObject(o, "intermediate_size", (double)c->n_hidden);
        cJSON_AddNumberToObject(o, "num_hidden_layers", (double)c->n_layer);
        cJSON_AddNumberToObject(o, "num_attention_heads", (double)c->n_head);
        cJSON_AddNumberToObject(o, "num_key_value_heads", (double)c->n_kv_head);
        cJSON_AddNumberToObject(o, "rms_norm_eps", (double)c->norm_eps);
        cJSON_AddNumberToObject(o, "rope_theta", (double)c->rope_theta);
        cJSON_AddStringToObject(o, "hidden_act", "silu");
        cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_head);
    } else {
        cJSON *a = cJSON_AddArrayToObject(o, "architectures");
        cJSON_AddItemToArray(a, cJSON_CreateString("GPT2LMHeadModel"));
        cJSON_AddStringToObject(o, "model_type", "gpt2");
        cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
        cJSON_AddNumberToObject(o, "n_positions", (double)c->block_size);
        cJSON_AddNumberToObject(o, "n_ctx", (double)c->block_size);
        cJSON_AddNumberToObject(o, "n_embd", (double)c->n_embd);
        cJSON_AddNumberToObject(o, "n_layer", (double)c->n_layer);
        cJSON_AddNumberToObject(o, "n_head", (double)c->n_head);
        cJSON_AddNumberToObject(o, "n_inner", (double)c->n_hidden);
        cJSON_AddStringToObject(o, "activation_function", c->gelu_tanh ? "gelu_new" : "gelu");
        cJSON_AddNumberToObject(o, "layer_norm_epsilon", (double)c->norm_eps);
        cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_head);
    }
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    return o;
}

/* GPT-2 block tensors that HF stores as Conv1D ([in, out]). */
static bool is_conv1d(const char *name, const gl_tensor *t)
{
    return t->ndim == 2 && strncmp(name, "transformer.h.", 14) == 0;
}

gl_status gl_gpt_export_hf(gl_module *m, const char *dir)
{
    const gl_gpt_config *c = gl_gpt_config_of(m);
    if (!c) return gl_error(GL_EINVAL, "export: not a GPT model");
    if (c->arch == GL_GPT_NEO)
        return gl_error(GL_EINVAL, "export: GPT-Neo models cannot be exported to the HF GPT-2 or LLaMA layouts");
    if (c->arch == GL_GPT_GPT2 && !c->bias)
        return gl_error(GL_EINVAL, "export: HF GPT-2 has biases; this model was built with bias = false");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return gl_error(GL_EIO, "export: %s: %s", dir, strerror(errno));
    gl_tensor_list l = GL_TENSOR_LIST_INIT;
    gl_status st = gl_module_named_parameters(m, &l);
    int64_t n = l.n;
    const char **names = malloc((size_t)(n + 1) * sizeof *names);
    gl_tensor **ts = calloc((size_t)(n + 1), sizeof *ts);
    char *cfg_path = join(dir, "config.json"), *st_path = join(dir, "model.safetensors");
    cJSON *cj = hf_config_json(c);
    if (st == GL_OK && (!names || !ts || !cfg_path || !st_path || !cj)) st = gl_error(GL_ENOMEM, "export: out of memory");
    int64_t k = 0;
    for (int64_t i = 0; i < n && st == GL_OK; i++) {
        gl_tensor *t = l.items[i].t;
        names[k] = l.items[i].name;
        if (c->arch == GL_GPT_GPT2 && is_conv1d(names[k], t)) {
            int64_t s[2] = {t->shape[1], t->shape[0]};
            gl_tensor *tt = gl_tensor_empty(GL_F32, 2, s);
            if (!tt) {
                st = gl_error_code();
                break;
            }
            const float *x = gl_tensor_f32(t);
            float *y = gl_tensor_f32(tt);
            for (int64_t r = 0; r < t->shape[0]; r++)
                for (int64_t q = 0; q < t->shape[1]; q++) y[q * t->shape[0] + r] = x[r * t->shape[1] + q];
            ts[k++] = tt;
        } else {
            gl_tensor_retain(t);
            ts[k++] = t;
        }
    }
    if (st == GL_OK) st = gl_safetensors_save(st_path, k, names, ts, 1, (const char *[]){"format"}, (const char *[]){"pt"});
    if (st == GL_OK) st = write_json(cfg_path, cj);
    for (int64_t i = 0; i < k; i++) gl_tensor_release(ts[i]);
    free(names);
    free(ts);
    free(cfg_path);
    free(st_path);
    cJSON_Delete(cj);
    gl_tensor_list_clear(&l);
    return st;
}
