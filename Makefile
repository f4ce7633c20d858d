# zili build. Plain make; every .c under src/ goes into build/libzili.a, tools/zili.c into build/zili,
# every tests/unit/test_*.c into its own test binary. Files named *_avx2.c get AVX2/FMA/F16C flags and are
# only called after a run-time CPU check.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS_BASE = -std=c11 -g $(OPT) -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
              -D_GNU_SOURCE -pthread -Iinclude -Isrc
CFLAGS  += $(CFLAGS_BASE)
LDLIBS  += -lmicrohttpd -ljansson -lpcre2-8 -lm -pthread
PYTHON  ?= python3

SRC      := $(shell find src -name '*.c' | sort)
OBJ      := $(SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libzili.a
BIN      := $(BUILD)/zili
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_COMMON := $(wildcard tests/unit/common/*.c)

MODEL_DIR ?= models
DEFAULT_MODEL ?= $(MODEL_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: all test asan run serve clean models unit
all: $(LIB) $(BIN) $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(findstring _avx2.c,$<),-mavx2 -mfma -mf16c)$(if $(findstring _avx512.c,$<),-mavx512f -mavx512dq -mavx2 -mfma -mf16c) -MMD -MP -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): tools/zili.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(TEST_COMMON) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -MMD -MP $< $(TEST_COMMON) $(LIB) -lcmocka $(LDLIBS) -o $@

# Unit tests only (no models, no Python).
unit: $(TEST_BIN)
	@scripts/run_unit.sh $(BUILD)

# Everything: unit tests, tokenizer vectors, agreement with our float reference and with llama.cpp.
test: all
	@scripts/run_tests.sh $(BUILD)

# Unit tests under AddressSanitizer + UBSan, in a separate build tree.
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fsanitize=address,undefined" LDLIBS="-fsanitize=address,undefined -lmicrohttpd -ljansson -lpcre2-8 -lm -pthread" unit

models: $(DEFAULT_MODEL)
$(DEFAULT_MODEL):
	scripts/fetch_models.sh $(MODEL_DIR)

run: $(BIN) $(DEFAULT_MODEL)
	$(BIN) run -m $(DEFAULT_MODEL) --chat -n 128 -p "What is the capital of France? Answer in one sentence."

# The OpenAI-compatible server on the default model, with its chat page at http://127.0.0.1:8080/.
serve: $(BIN) $(DEFAULT_MODEL)
	$(BIN) serve -m $(DEFAULT_MODEL) --host 127.0.0.1 --port 8080

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
