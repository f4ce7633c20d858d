# zili build. Plain make; every .c under src/ goes into build/libzili.a, tools/zili.c into build/zili,
# every tests/unit/test_*.c into its own test binary. Files named *_avx2.c get AVX2/FMA/F16C flags, *_avx512.c
# AVX-512 F/DQ, *_vnni.c AVX-512 BW/VL/VNNI (not AVX-VNNI: its VEX encoding faults on CPUs with AVX512-VNNI alone),
# *_bf16.c AVX512-BF16, *_amx.c AMX-TILE/INT8/BF16 with AVX-512 F/DQ/BW/VL/VNNI/BF16 (x86 targets only), *_neon.c ARMv8.2-A with the dot-product extension (aarch64 targets only);
# each is only called after a run-time CPU check. The target is what `$(CC) -dumpmachine` names, so
# `make CC=aarch64-linux-gnu-gcc BUILD=build-arm64` cross-builds for ARM.

.DEFAULT_GOAL := all

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS_BASE = -std=c11 -g $(OPT) -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
              -D_GNU_SOURCE -pthread -Iinclude -Isrc
CFLAGS  += $(CFLAGS_BASE)
# libedit: zili chat's line editing; libcurl + libcrypto (OpenSSL's SHA-256): zili pull.
LDLIBS  += -lmicrohttpd -ljansson -lpcre2-8 -lutf8proc -ledit -lcurl -lcrypto -lm -pthread
# The tests' Python is the project's virtual environment, which `make test` (scripts/setup.sh test) creates.
VENV    ?= .venv
PYTHON  ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)

SRC_ALL  := $(shell find src -name '*.c' | sort)
# Per-file ISA flags, by target architecture; another architecture's kernel files are left out of the build.
TARGET_ARCH_NAME := $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))
ifneq ($(filter x86_64 i386 i486 i586 i686,$(TARGET_ARCH_NAME)),)
SRC      := $(filter-out %_neon.c,$(SRC_ALL))
AMX_FLAGS = -mamx-tile -mamx-int8 -mamx-bf16 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 \
            -mavx2 -mfma -mf16c
ISA_FLAGS = $(if $(findstring _amx.c,$<),$(AMX_FLAGS))$(if $(findstring _avx2.c,$<),-mavx2 -mfma -mf16c)$(if $(findstring _avx512.c,$<),-mavx512f -mavx512dq -mavx2 -mfma -mf16c)$(if $(findstring _vnni.c,$<),-mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c)$(if $(findstring _bf16.c,$<),-mavx512f -mavx512bf16 -mavx512vl)
else ifeq ($(TARGET_ARCH_NAME),aarch64)
SRC      := $(filter-out %_avx2.c %_avx512.c %_vnni.c %_bf16.c %_amx.c,$(SRC_ALL))
ISA_FLAGS = $(if $(findstring _neon.c,$<),-march=armv8.2-a+dotprod)
else
SRC      := $(filter-out %_avx2.c %_avx512.c %_vnni.c %_bf16.c %_amx.c %_neon.c,$(SRC_ALL))
ISA_FLAGS =
endif

# The Vulkan backend (src/backend/vulkan/): built when glslc and the Vulkan headers are present (Debian:
# glslc, libvulkan-dev), left out otherwise (VULKAN=0 forces that). libvulkan itself is opened at run time, so the
# binary runs CPU-only, and says so, where no Vulkan driver is installed. Each shader variant is compiled to SPIR-V
# as a C initializer list ($(BUILD)/shaders/*.inc) that vk.c embeds.
VULKAN ?= $(if $(and $(shell command -v glslc 2>/dev/null),$(wildcard /usr/include/vulkan/vulkan.h)),1,0)
VK_DIR := src/backend/vulkan/shaders
ifeq ($(VULKAN),1)
CFLAGS += -DZL_HAVE_VULKAN -I$(BUILD)
LDLIBS += -ldl
VK_WTYPES := f32:0 f16:1 bf16:30 q4_0:2 q4_1:3 q5_0:6 q8_0:8 q4_k:12 q5_k:13 q6_k:14
VK_INC :=
define vk_shader
$(BUILD)/shaders/$(1).inc: $(VK_DIR)/$(2).comp $(VK_DIR)/common.glsl
	@mkdir -p $$(dir $$@)
	glslc --target-env=vulkan1.1 -O $(3) -mfmt=c -o $$@ $$<
VK_INC += $(BUILD)/shaders/$(1).inc
endef
$(foreach w,$(VK_WTYPES),$(eval $(call vk_shader,mul_mv_$(word 1,$(subst :, ,$(w))),mul_mv,-DWTYPE=$(word 2,$(subst :, ,$(w))))))
$(foreach w,$(VK_WTYPES),$(eval $(call vk_shader,mul_mv_rt_$(word 1,$(subst :, ,$(w))),mul_mv,-DROW_THREAD -DWTYPE=$(word 2,$(subst :, ,$(w))))))
$(foreach w,$(VK_WTYPES),$(eval $(call vk_shader,mul_mm_$(word 1,$(subst :, ,$(w))),mul_mm,-DWTYPE=$(word 2,$(subst :, ,$(w))))))
$(foreach w,$(VK_WTYPES),$(eval $(call vk_shader,mul_mm_lanes_$(word 1,$(subst :, ,$(w))),mul_mm_lanes,-DWTYPE=$(word 2,$(subst :, ,$(w))))))
$(foreach w,$(VK_WTYPES),$(eval $(call vk_shader,get_rows_$(word 1,$(subst :, ,$(w))),get_rows,-DWTYPE=$(word 2,$(subst :, ,$(w))))))
$(foreach s,rmsnorm rope eltwise,$(eval $(call vk_shader,$(s),$(s),)))
$(eval $(call vk_shader,kv_store_f16,kv_store,-DKV_F16))
$(eval $(call vk_shader,kv_store_f32,kv_store,))
$(eval $(call vk_shader,attention_f16,attention,-DKV_F16))
$(eval $(call vk_shader,attention_f32,attention,))
else
SRC      := $(filter-out src/backend/vulkan/%,$(SRC))
endif

# The chat page (src/server/page.html) is embedded in page.c as the bytes of $(BUILD)/server/page.html.inc, a C
# initializer list written by od and sed (coreutils), so that the page is edited as one plain HTML file.
PAGE_INC := $(BUILD)/server/page.html.inc
$(PAGE_INC): src/server/page.html
	@mkdir -p $(dir $@)
	od -An -v -tx1 $< | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g' >$@.tmp && mv $@.tmp $@
$(BUILD)/src/server/page.o: $(PAGE_INC)
$(BUILD)/src/server/page.o: CFLAGS += -I$(BUILD)

OBJ      := $(SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libzili.a
BIN      := $(BUILD)/zili
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_COMMON := $(wildcard tests/unit/common/*.c)

MODEL_DIR ?= models
DEFAULT_MODEL ?= $(MODEL_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: all test asan run serve clean models unit setup setup-test
all: $(LIB) $(BIN) $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_FLAGS) -MMD -MP -c $< -o $@

ifeq ($(VULKAN),1)
$(BUILD)/src/backend/vulkan/vk.o: $(VK_INC)
endif

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
# `make test` and `make run` first install what they need (scripts/setup.sh: Debian packages as root, the Python
# test packages in $(VENV)); a second run installs nothing. Then they go on in a fresh make, which sees the venv.
test:
	@scripts/setup.sh test
	@$(MAKE) --no-print-directory all
	@PYTHON=$(VENV)/bin/python scripts/run_tests.sh $(BUILD)

setup:
	@scripts/setup.sh build
setup-test:
	@scripts/setup.sh test

# aarch64: cross-build into build-arm64 (gcc-aarch64-linux-gnu and the arm64 dev libraries, see .ci/run) and run
# the kernel unit tests under qemu-user with the NEON sets and ZILI_CPU=scalar, plus a greedy generation compared
# with this machine's build (scripts/test_arm.sh says what it ran).
ARM_CC ?= aarch64-linux-gnu-gcc
ARM_TESTS ?= test_dtype test_kquant test_ops test_threadpool test_gguf test_tokenizer
.PHONY: test-arm
test-arm: $(BIN)
	$(MAKE) BUILD=build-arm64 CC=$(ARM_CC) build-arm64/libzili.a build-arm64/zili \
	    $(ARM_TESTS:%=build-arm64/tests/%)
	ARM_TESTS="$(ARM_TESTS)" BUILD_X86=$(BUILD) scripts/test_arm.sh build-arm64

# Unit tests under AddressSanitizer + UBSan, in a separate build tree.
ASAN_MAKE = $(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fsanitize=address,undefined" LDLIBS="-fsanitize=address,undefined -lmicrohttpd -ljansson -lpcre2-8 -lutf8proc -ledit -lcurl -lcrypto -lm -pthread"
asan:
	UNIT_TIMEOUT=$${UNIT_TIMEOUT:-2400} $(ASAN_MAKE) unit

# The server and hostile-client tests (tests/server) against an ASan + UBSan build of zili serve. Any sanitizer
# report, and any leak LeakSanitizer finds when a server exits, makes that server exit non-zero, which fails the
# test that stops it; ZILI_SANITIZED=1 gives the tests longer deadlines and fewer load rounds.
.PHONY: asan-server
asan-server: $(DEFAULT_MODEL)
	$(ASAN_MAKE) build-asan/zili
	ZILI=build-asan/zili ZILI_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(PYTHON) -m pytest -q --tb=short -p no:cacheprovider --durations=5 tests/server

# Every test model that is downloaded (SmolLM2, Gemma 3 270M); the script keeps files already there.
models:
	scripts/fetch_models.sh $(MODEL_DIR)
$(DEFAULT_MODEL):
	scripts/fetch_models.sh $(MODEL_DIR)

run:
	@scripts/setup.sh build
	@$(MAKE) --no-print-directory run-default

.PHONY: run-default
run-default: $(BIN) $(DEFAULT_MODEL)
	$(BIN) run -m $(DEFAULT_MODEL) --chat --temp 0 -n 128 -p "What is the capital of France? Answer in one sentence."

# The OpenAI-compatible server on the default model, with its chat page at http://127.0.0.1:8080/.
serve: $(BIN) $(DEFAULT_MODEL)
	$(BIN) serve -m $(DEFAULT_MODEL) --host 127.0.0.1 --port 8080

# Fuzzing: every harness in tests/fuzz/ built with clang's libFuzzer + ASan + UBSan (library in $(FUZZ_BUILD)/),
# seeded by tests/fuzz/make_corpus.py into the git-ignored tests/fuzz/corpus/, each run for FUZZ_SECONDS seconds.
# Crashing inputs go to $(FUZZ_BUILD)/artifacts/HARNESS/; keep them as tests/fuzz/regress/HARNESS/ files (replayed
# by the unit test test_fuzz_regress). Fails if any harness finds a crash.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CORPUS  ?= tests/fuzz/corpus
FUZZ_OPT     := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fsanitize=fuzzer-no-link
FUZZ_NAMES   := gguf tok_bpe tok_spm chat oai http grammar tools
FUZZ_BIN     := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz/fuzz_%)
FUZZ_VOCAB_bpe := $(DEFAULT_MODEL)
FUZZ_VOCAB_spm := tests/data/vocab/ggml-vocab-llama-spm.gguf

.PHONY: fuzz
fuzz: $(DEFAULT_MODEL)
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT="$(FUZZ_OPT)" $(FUZZ_BUILD)/libzili.a
	$(MAKE) $(FUZZ_BIN)
	$(PYTHON) tests/fuzz/make_corpus.py $(FUZZ_CORPUS)
	@failed=""; for h in $(FUZZ_NAMES); do \
	    mkdir -p $(FUZZ_CORPUS)/$$h $(FUZZ_BUILD)/artifacts/$$h; \
	    echo "== fuzz_$$h: $(FUZZ_SECONDS) s"; \
	    $(FUZZ_BUILD)/fuzz/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=4096 \
	        -max_len=$$([ $$h = gguf ] && echo 8192 || echo 4096) -print_final_stats=1 \
	        $$([ -f tests/fuzz/$$h.dict ] && echo -dict=tests/fuzz/$$h.dict) \
	        -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$h/ $(FUZZ_CORPUS)/$$h \
	        $$([ -d tests/fuzz/regress/$$h ] && echo tests/fuzz/regress/$$h) 2>$(FUZZ_BUILD)/fuzz_$$h.log; \
	    rc=$$?; grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' $(FUZZ_BUILD)/fuzz_$$h.log; \
	    if [ $$rc -ne 0 ]; then tail -40 $(FUZZ_BUILD)/fuzz_$$h.log; failed="$$failed $$h"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (inputs in $(FUZZ_BUILD)/artifacts/)"; exit 1; fi; \
	echo "fuzz: no crashes"

$(FUZZ_BUILD)/fuzz/fuzz_%: OPT = $(FUZZ_OPT)
$(FUZZ_BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libzili.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libzili.a $(LDLIBS) -o $@
$(FUZZ_BUILD)/fuzz/fuzz_tok_%: tests/fuzz/fuzz_tokenizer.c $(FUZZ_BUILD)/libzili.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_BASE) -fsanitize=fuzzer -DZL_FUZZ_VOCAB='"$(FUZZ_VOCAB_$*)"' $< $(FUZZ_BUILD)/libzili.a \
	    $(LDLIBS) -o $@

clean:
	rm -rf build build-asan build-arm64

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
