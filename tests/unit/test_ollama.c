/*
 * test_ollama.c - Ollama's request bodies as OpenAI bodies, and Ollama's model names (server/ollama_req.c).
 * Expected values come from Ollama's documented API (num_predict -1 and -2, format "json" or a schema, think)
 * and llama.cpp's llama_ftype numbering; the end-to-end behaviour is tests/server/test_ollama_api.py's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "server/ollama.h"

/* Parses text, rewrites it; the OpenAI body (caller decrefs) or NULL with why. */
static json_t *rewrite(const char *text, bool chat, bool *raw, char *why)
{
    json_t *in = json_loads(text, 0, NULL);
    assert_non_null(in);
    json_t *o = ol_to_openai(in, chat, 1024, raw, why, 256);
    json_decref(in);
    return o;
}

static void test_chat_options(void **state)
{
    (void)state;
    bool raw;
    char why[256];
    json_t *o = rewrite("{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\", \"images\": []}],"
                        " \"options\": {\"temperature\": 0.5, \"top_k\": 7, \"num_predict\": 12, \"stop\": [\"x\"],"
                        " \"num_ctx\": 99999, \"mirostat\": 1}, \"keep_alive\": \"5m\"}",
                        true, &raw, why);
    assert_non_null(o);
    assert_false(raw);
    assert_true(json_is_true(json_object_get(o, "stream"))); /* Ollama streams unless told not to */
    assert_float_equal(json_number_value(json_object_get(o, "temperature")), 0.5, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "top_k")), 7);
    assert_int_equal(json_integer_value(json_object_get(o, "max_tokens")), 12);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "stop"), 0)), "x");
    assert_null(json_object_get(o, "num_ctx"));  /* ignored */
    assert_null(json_object_get(o, "mirostat")); /* ignored */
    json_t *m = json_array_get(json_object_get(o, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "content")), "hi");
    assert_null(json_object_get(m, "images"));
    json_decref(o);
    /* num_predict -1 (no limit), -2 (fill the context) and 0: no max_tokens, the server's limit applies */
    for (int k = 0; k < 3; k++) {
        char body[160];
        snprintf(body, sizeof body, "{\"messages\": [], \"stream\": false, \"options\": {\"num_predict\": %d}}", -k);
        o = rewrite(body, true, &raw, why);
        assert_non_null(o);
        assert_null(json_object_get(o, "max_tokens"));
        assert_true(json_is_false(json_object_get(o, "stream")));
        json_decref(o);
    }
}

static void test_format_and_think(void **state)
{
    (void)state;
    bool raw;
    char why[256];
    json_t *o = rewrite("{\"messages\": [], \"format\": \"json\", \"think\": false}", true, &raw, why);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "response_format"), "type")),
                        "json_object");
    assert_true(json_is_false(json_object_get(json_object_get(o, "chat_template_kwargs"), "enable_thinking")));
    json_decref(o);
    o = rewrite("{\"messages\": [], \"format\": {\"type\": \"object\"}, \"think\": \"high\"}", true, &raw, why);
    assert_non_null(o);
    json_t *rf = json_object_get(o, "response_format");
    assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_schema");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_object_get(rf, "json_schema"), "schema"), "type")),
        "object");
    assert_string_equal(json_string_value(json_object_get(o, "reasoning_format")), "deepseek");
    json_decref(o);
    o = rewrite("{\"messages\": [], \"format\": \"\"}", true, &raw, why); /* "" is no format */
    assert_non_null(o);
    assert_null(json_object_get(o, "response_format"));
    json_decref(o);
}

static void test_generate(void **state)
{
    (void)state;
    bool raw;
    char why[256];
    json_t *o = rewrite("{\"prompt\": \"p\", \"system\": \"s\"}", false, &raw, why);
    assert_non_null(o);
    assert_false(raw);
    json_t *ms = json_object_get(o, "messages");
    assert_int_equal(json_array_size(ms), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ms, 0), "role")), "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ms, 0), "content")), "s");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ms, 1), "role")), "user");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ms, 1), "content")), "p");
    json_decref(o);
    o = rewrite("{\"prompt\": \"p\", \"raw\": true, \"context\": []}", false, &raw, why);
    assert_non_null(o);
    assert_true(raw);
    assert_string_equal(json_string_value(json_object_get(o, "prompt")), "p");
    assert_null(json_object_get(o, "messages"));
    json_decref(o);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        bool chat;
        const char *body, *words;
    } cases[] = {
        {true, "{\"messages\": {}}", "'messages'"},
        {true, "{\"messages\": [3]}", "messages[0]"},
        {true, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"images\": [\"aGk=\"]}]}", "vision"},
        {true, "{\"messages\": [], \"options\": 1}", "'options'"},
        {true, "{\"messages\": [], \"options\": {\"num_predict\": 1.5}}", "num_predict"},
        {true, "{\"messages\": [], \"options\": {\"num_predict\": 1025}}", "context (1024"},
        {true, "{\"messages\": [], \"format\": \"xml\"}", "'format'"},
        {true, "{\"messages\": [], \"format\": [1]}", "'format'"},
        {true, "{\"messages\": [], \"think\": 1}", "'think'"},
        {true, "{\"messages\": [], \"stream\": 1}", "'stream'"},
        {true, "{\"messages\": [], \"keep_alive\": {}}", "'keep_alive'"},
        {false, "{\"prompt\": 1}", "'prompt'"},
        {false, "{\"prompt\": \"x\", \"system\": 1}", "'system'"},
        {false, "{\"prompt\": \"x\", \"raw\": \"yes\"}", "'raw'"},
        {false, "{\"prompt\": \"x\", \"suffix\": \"y\"}", "'suffix'"},
        {false, "{\"prompt\": \"x\", \"template\": \"t\"}", "'template'"},
        {false, "{\"prompt\": \"x\", \"context\": [1]}", "'context'"},
        {false, "{\"prompt\": \"x\", \"images\": [\"aGk=\"]}", "vision"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bool raw;
        char why[256];
        json_t *o = rewrite(cases[i].body, cases[i].chat, &raw, why);
        if (o || !strstr(why, cases[i].words))
            fail_msg("case %zu (%s): got '%s'", i, cases[i].body, o ? "(accepted)" : why);
    }
}

static void test_names(void **state)
{
    (void)state;
    char b[64];
    ol_model_name("SmolLM2-135M.Q4_1.gguf", b, sizeof b);
    assert_string_equal(b, "SmolLM2-135M.Q4_1:latest");
    ol_model_name("plain", b, sizeof b);
    assert_string_equal(b, "plain:latest");
    const char *id = "SmolLM2-135M.Q4_1.gguf";
    assert_true(ol_name_matches(id, "SmolLM2-135M.Q4_1.gguf"));
    assert_true(ol_name_matches(id, "SmolLM2-135M.Q4_1"));
    assert_true(ol_name_matches(id, "smollm2-135m.q4_1:latest"));
    assert_true(ol_name_matches(id, "SmolLM2-135M.Q4_1.gguf:latest"));
    assert_false(ol_name_matches(id, "SmolLM2-135M.Q4_1:7b"));
    assert_false(ol_name_matches(id, "SmolLM2-135M"));
    assert_false(ol_name_matches(id, ""));
    assert_false(ol_name_matches(id, ":latest"));
    assert_false(ol_name_matches("a.gguf", ".gguf"));
}

static void test_file_types_and_sizes(void **state)
{
    (void)state;
    assert_string_equal(ol_file_type_name(0), "F32");
    assert_string_equal(ol_file_type_name(3), "Q4_1");
    assert_string_equal(ol_file_type_name(15), "Q4_K_M");
    assert_string_equal(ol_file_type_name(32), "BF16");
    assert_string_equal(ol_file_type_name(4), "unknown"); /* removed from llama.cpp */
    assert_string_equal(ol_file_type_name(-1), "unknown");
    assert_string_equal(ol_file_type_name(1000), "unknown");
    char b[32];
    ol_param_size(134515008, b, sizeof b);
    assert_string_equal(b, "134.52M");
    ol_param_size(7000000000ull, b, sizeof b);
    assert_string_equal(b, "7B");
    ol_param_size(1235814400, b, sizeof b);
    assert_string_equal(b, "1.2B");
    ol_param_size(268098176, b, sizeof b);
    assert_string_equal(b, "268.10M");
    ol_param_size(4500, b, sizeof b);
    assert_string_equal(b, "4K"); /* "%.0f" rounds half to even */
    ol_param_size(999, b, sizeof b);
    assert_string_equal(b, "999");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_options), cmocka_unit_test(test_format_and_think),
        cmocka_unit_test(test_generate),     cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_names),        cmocka_unit_test(test_file_types_and_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
