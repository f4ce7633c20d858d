/*
 * embeddings.c - POST /v1/embeddings (embeddings.h says what it takes and answers).
 */
#include "server/embeddings.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "tokenizer/vocab.h"

void zl_emb_host_init(zl_emb_host *h, const zl_model *model, const char *model_id, int32_t n_ctx,
                      int32_t n_threads)
{
    memset(h, 0, sizeof *h);
    h->model = model;
    h->model_id = model_id;
    h->n_ctx = n_ctx;
    h->n_threads = n_threads;
    pthread_mutex_init(&h->mu, NULL);
}

void zl_emb_host_free(zl_emb_host *h)
{
    zl_embedder_free(h->e);
    h->e = NULL;
    pthread_mutex_destroy(&h->mu);
}

/* The inputs of one request, each as token ids (owned). */
typedef struct inputs {
    int32_t **ids;
    size_t *lens;
    size_t n;
} inputs;

static void inputs_free(inputs *in)
{
    for (size_t i = 0; i < in->n; i++)
        free(in->ids[i]);
    free(in->ids);
    free(in->lens);
}

static bool is_token_list(const json_t *a)
{
    if (!json_is_array(a) || json_array_size(a) == 0)
        return false;
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!json_is_integer(json_array_get(a, i)))
            return false;
    return true;
}

/* One input (a string or a list of token ids) into in->ids[i]; false with why set. */
static bool read_one(const zl_model *m, const json_t *v, size_t i, inputs *in, char *why, size_t cap)
{
    const int32_t n_vocab = zl_model_hparams(m)->n_vocab;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) {
            snprintf(why, cap, "input %zu is an empty string", i);
            return false;
        }
        zl_err err = {{0}};
        if (zl_tokenize(zl_model_vocab(m), json_string_value(v), json_string_length(v), true, false, &in->ids[i],
                        &in->lens[i], &err) != ZL_OK) {
            snprintf(why, cap, "input %zu: %s", i, err.msg);
            return false;
        }
        if (in->lens[i] == 0) {
            snprintf(why, cap, "input %zu has no tokens", i);
            return false;
        }
        return true;
    }
    if (!is_token_list(v)) {
        snprintf(why, cap, "input %zu must be a non-empty string or a non-empty list of token ids", i);
        return false;
    }
    const size_t n = json_array_size(v);
    if (!(in->ids[i] = malloc(n * sizeof *in->ids[i]))) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    in->lens[i] = n;
    for (size_t j = 0; j < n; j++) {
        const json_int_t t = json_integer_value(json_array_get(v, j));
        if (t < 0 || t >= n_vocab) {
            snprintf(why, cap, "input %zu: token %zu (%lld) is not an id in [0, %d)", i, j, (long long)t, n_vocab);
            return false;
        }
        in->ids[i][j] = (int32_t)t;
    }
    return true;
}

/* "input" into in: a string, a token list, or a list of either; false with why set (in is freed by the caller). */
static bool read_inputs(const zl_model *m, const json_t *input, inputs *in, char *why, size_t cap)
{
    const json_t *one = NULL;
    size_t n = 1;
    if (json_is_string(input) || is_token_list(input)) {
        one = input;
    } else if (json_is_array(input)) {
        n = json_array_size(input);
        if (n == 0) {
            snprintf(why, cap, "'input' is an empty list");
            return false;
        }
        if (n > ZL_EMB_MAX_INPUTS) {
            snprintf(why, cap, "'input' has %zu items, more than the limit of %d", n, ZL_EMB_MAX_INPUTS);
            return false;
        }
    } else {
        snprintf(why, cap, "'input' must be a string, a list of strings, a list of token ids or a list of them");
        return false;
    }
    in->ids = calloc(n, sizeof *in->ids);
    in->lens = calloc(n, sizeof *in->lens);
    if (!in->ids || !in->lens) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    in->n = n;
    for (size_t i = 0; i < n; i++)
        if (!read_one(m, one ? one : json_array_get(input, i), i, in, why, cap))
            return false;
    return true;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The bytes of v[0..n) (little-endian float32, as this host stores them on x86 and ARM) in base64. */
static json_t *base64_floats(const float *v, size_t n)
{
    const unsigned char *p = (const unsigned char *)v;
    const size_t len = n * sizeof(float), out_len = (len + 2) / 3 * 4;
    char *s = malloc(out_len + 1);
    if (!s)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        const unsigned b0 = p[i], b1 = i + 1 < len ? p[i + 1] : 0, b2 = i + 2 < len ? p[i + 2] : 0;
        const unsigned w = b0 << 16 | b1 << 8 | b2;
        s[o++] = B64[w >> 18 & 63];
        s[o++] = B64[w >> 12 & 63];
        s[o++] = i + 1 < len ? B64[w >> 6 & 63] : '=';
        s[o++] = i + 2 < len ? B64[w & 63] : '=';
    }
    s[o] = '\0';
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

static json_t *fail(int *status, int code, const char **param, const char *p, char *why, size_t cap,
                    const char *msg)
{
    *status = code;
    *param = p;
    if (msg)
        snprintf(why, cap, "%s", msg);
    return NULL;
}

json_t *zl_emb_request(zl_emb_host *h, json_t *root, int *status, const char **param, char *why, size_t cap)
{
    *param = NULL;
    const zl_hparams *hp = zl_model_hparams(h->model);
    if (!zl_model_can_embed(h->model)) {
        snprintf(why, cap, "this model (architecture %s) makes no embeddings (bert, llama, qwen2, qwen3 do)",
                 hp->arch_name);
        return fail(status, 400, param, "model", why, cap, NULL);
    }
    const json_t *input = json_object_get(root, "input");
    if (!input)
        return fail(status, 400, param, "input", why, cap, "'input' is required");
    const json_t *fmt = json_object_get(root, "encoding_format");
    bool b64 = false;
    if (fmt && !json_is_null(fmt)) {
        if (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") &&
                                     strcmp(json_string_value(fmt), "base64")))
            return fail(status, 400, param, "encoding_format", why, cap,
                        "'encoding_format' must be \"float\" or \"base64\"");
        b64 = !strcmp(json_string_value(fmt), "base64");
    }
    const json_t *dims = json_object_get(root, "dimensions");
    if (dims && !json_is_null(dims)) {
        if (!json_is_integer(dims) || json_integer_value(dims) != hp->n_embd) {
            snprintf(why, cap, "'dimensions': this model makes vectors of %d dimensions only and is not trained to "
                     "truncate them", hp->n_embd);
            return fail(status, 400, param, "dimensions", why, cap, NULL);
        }
    }
    const json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model) && !json_is_string(model))
        return fail(status, 400, param, "model", why, cap, "'model' must be a string");
    const json_t *user = json_object_get(root, "user");
    if (user && !json_is_null(user) && !json_is_string(user))
        return fail(status, 400, param, "user", why, cap, "'user' must be a string");

    inputs in = {0};
    if (!read_inputs(h->model, input, &in, why, cap)) {
        inputs_free(&in);
        return fail(status, 400, param, "input", why, cap, NULL);
    }
    size_t n_tokens = 0;
    for (size_t i = 0; i < in.n; i++)
        n_tokens += in.lens[i];

    json_t *out = NULL;
    float *vec = NULL;
    zl_err err = {{0}};
    pthread_mutex_lock(&h->mu);
    int rc = ZL_OK;
    if (!h->e) {
        const zl_embedder_params p = {.n_ctx = h->n_ctx, .n_threads = h->n_threads, .normalize = true};
        rc = zl_embedder_create(h->model, &p, &h->e, &err);
    }
    int32_t dim = 0;
    if (rc == ZL_OK) {
        dim = zl_embedder_dim(h->e);
        if (!(vec = malloc(in.n * (size_t)dim * sizeof *vec)))
            rc = zl_err_set(&err, ZL_ENOMEM, "out of memory for %zu vectors", in.n);
    }
    if (rc == ZL_OK)
        rc = zl_embed(h->e, (const int32_t *const *)in.ids, in.lens, in.n, vec, &err);
    pthread_mutex_unlock(&h->mu);
    if (rc != ZL_OK) {
        fail(status, rc == ZL_EINVAL || rc == ZL_ERANGE ? 400 : 500, param,
             rc == ZL_EINVAL || rc == ZL_ERANGE ? "input" : NULL, why, cap, err.msg);
        goto done;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < in.n; i++) {
        const float *v = vec + i * (size_t)dim;
        json_t *e = json_object(), *emb;
        if (b64) {
            emb = base64_floats(v, (size_t)dim);
        } else {
            emb = json_array();
            for (int32_t k = 0; k < dim; k++)
                json_array_append_new(emb, json_real(v[k]));
        }
        json_object_set_new(e, "object", json_string("embedding"));
        json_object_set_new(e, "index", json_integer((json_int_t)i));
        json_object_set_new(e, "embedding", emb ? emb : json_null());
        json_array_append_new(data, e);
    }
    out = json_object();
    json_object_set_new(out, "object", json_string("list"));
    json_object_set_new(out, "data", data);
    json_object_set_new(out, "model", json_string(h->model_id));
    json_t *usage = json_object();
    json_object_set_new(usage, "prompt_tokens", json_integer((json_int_t)n_tokens));
    json_object_set_new(usage, "total_tokens", json_integer((json_int_t)n_tokens));
    json_object_set_new(out, "usage", usage);
done:
    free(vec);
    inputs_free(&in);
    return out;
}
