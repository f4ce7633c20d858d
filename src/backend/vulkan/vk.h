/*
 * vk.h - what the Vulkan backend's files share: the device object, allocations, the loaded entry points, the
 * shader table and the dispatch helper. Only src/backend/vulkan/ includes this.
 *
 * libvulkan is opened at run time (dlopen of libvulkan.so.1), so the binary has no link-time dependency on it:
 * without a driver the backend enumerates no device and says why.
 *
 * Execution: ops record dispatches into one open command buffer, each followed by a compute-to-compute memory
 * barrier (ops run in order and see the ones before); sync submits it and waits. Small host arrays of an op
 * (token ids, slots, block tables, RoPE tables) go into a host-visible scratch ring, reset at each sync; when the
 * ring or the descriptor pool runs out mid-step, the work so far is submitted and waited for first.
 */
#ifndef ZL_VK_H
#define ZL_VK_H

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "backend/backend.h"

#define ZL_VK_FUNCS(X)                                                                                          \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)                       \
    X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2)                                         \
    X(vkGetPhysicalDeviceMemoryProperties) X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkCreateDevice)       \
    X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer)                                \
    X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory)  \
    X(vkUnmapMemory) X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreateDescriptorSetLayout)            \
    X(vkDestroyDescriptorSetLayout) X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout)                      \
    X(vkCreateComputePipelines) X(vkDestroyPipeline) X(vkCreateDescriptorPool) X(vkDestroyDescriptorPool)       \
    X(vkResetDescriptorPool) X(vkAllocateDescriptorSets) X(vkUpdateDescriptorSets) X(vkCreateCommandPool)      \
    X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) X(vkBeginCommandBuffer) X(vkEndCommandBuffer)           \
    X(vkResetCommandBuffer) X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) X(vkCmdPushConstants)              \
    X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer) X(vkQueueSubmit)             \
    X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences) X(vkDeviceWaitIdle)

typedef struct zl_vk_fn {
#define ZL_VK_DECL(name) PFN_##name name;
    ZL_VK_FUNCS(ZL_VK_DECL)
#undef ZL_VK_DECL
} zl_vk_fn;

/* The shaders this build embeds (SPIR-V from glslc, see the Makefile). */
typedef enum zl_vk_shader {
    ZL_VKS_MUL_MV_F32, ZL_VKS_MUL_MV_F16, ZL_VKS_MUL_MV_BF16, ZL_VKS_MUL_MV_Q4_0, ZL_VKS_MUL_MV_Q4_1,
    ZL_VKS_MUL_MV_Q5_0, ZL_VKS_MUL_MV_Q8_0, ZL_VKS_MUL_MV_Q4_K, ZL_VKS_MUL_MV_Q5_K, ZL_VKS_MUL_MV_Q6_K,
    ZL_VKS_GET_ROWS_F32, ZL_VKS_GET_ROWS_F16, ZL_VKS_GET_ROWS_BF16, ZL_VKS_GET_ROWS_Q4_0, ZL_VKS_GET_ROWS_Q4_1,
    ZL_VKS_GET_ROWS_Q5_0, ZL_VKS_GET_ROWS_Q8_0, ZL_VKS_GET_ROWS_Q4_K, ZL_VKS_GET_ROWS_Q5_K, ZL_VKS_GET_ROWS_Q6_K,
    ZL_VKS_RMSNORM, ZL_VKS_ROPE, ZL_VKS_ELTWISE, ZL_VKS_KV_STORE_F16, ZL_VKS_KV_STORE_F32, ZL_VKS_ATTENTION_F16,
    ZL_VKS_ATTENTION_F32,
    ZL_VKS_MUL_MV_RT_F32, ZL_VKS_MUL_MV_RT_F16, ZL_VKS_MUL_MV_RT_BF16, ZL_VKS_MUL_MV_RT_Q4_0, ZL_VKS_MUL_MV_RT_Q4_1,
    ZL_VKS_MUL_MV_RT_Q5_0, ZL_VKS_MUL_MV_RT_Q8_0, ZL_VKS_MUL_MV_RT_Q4_K, ZL_VKS_MUL_MV_RT_Q5_K, ZL_VKS_MUL_MV_RT_Q6_K,
    ZL_VKS_MUL_MM_F32, ZL_VKS_MUL_MM_F16, ZL_VKS_MUL_MM_BF16, ZL_VKS_MUL_MM_Q4_0, ZL_VKS_MUL_MM_Q4_1,
    ZL_VKS_MUL_MM_Q5_0, ZL_VKS_MUL_MM_Q8_0, ZL_VKS_MUL_MM_Q4_K, ZL_VKS_MUL_MM_Q5_K, ZL_VKS_MUL_MM_Q6_K,
    ZL_VKS_MUL_MM_LANES_F32, ZL_VKS_MUL_MM_LANES_F16, ZL_VKS_MUL_MM_LANES_BF16, ZL_VKS_MUL_MM_LANES_Q4_0,
    ZL_VKS_MUL_MM_LANES_Q4_1, ZL_VKS_MUL_MM_LANES_Q5_0, ZL_VKS_MUL_MM_LANES_Q8_0, ZL_VKS_MUL_MM_LANES_Q4_K,
    ZL_VKS_MUL_MM_LANES_Q5_K, ZL_VKS_MUL_MM_LANES_Q6_K,
    ZL_VKS_COUNT
} zl_vk_shader;

enum { ZL_VK_BINDINGS = 4, ZL_VK_PUSH_BYTES = 64, ZL_VK_SETS = 1024 };

struct zl_dmem {
    VkBuffer buf;
    VkDeviceMemory mem;
    uint64_t size;
    void *map; /* host mapping when the memory is host-visible, else NULL */
};

typedef struct zl_vk {
    zl_dev base;
    zl_vk_fn fn;
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    uint32_t mem_type_dev;  /* device-local (host-visible too where the device has such memory) */
    uint32_t mem_type_host; /* host-visible + coherent */
    bool dev_host_visible;  /* mem_type_dev is host-visible: uploads are memcpy */
    uint64_t align;         /* minStorageBufferOffsetAlignment */
    uint64_t max_range;     /* maxStorageBufferRange */
    uint32_t max_groups;    /* maxComputeWorkGroupCount[0] and [1] (at least 65535) */
    bool mv_rows;           /* mat-vec one row per thread (mul_mv_rt_*): CPU-type devices, or ZILI_VK_MATVEC=rows */
    int32_t mm_min;         /* batches of at least this many tokens take the tiled matmul (mul_mm_*): 16 with mv_rows
                             * (same sums, bit for bit), else off; ZILI_VK_MM_MIN */

    VkDescriptorSetLayout dsl;
    VkPipelineLayout pl;
    VkPipeline pipe[ZL_VKS_COUNT];
    VkDescriptorPool dpool;
    uint32_t sets_used;
    VkCommandPool cpool;
    VkCommandBuffer cmd;
    bool recording;
    uint32_t n_recorded; /* dispatches and copies in the open command buffer */
    VkFence fence;
    bool lost;           /* a submit or wait failed: every later op fails */

    zl_dmem *scratch;    /* host-visible ring for ops' host arrays */
    uint64_t scratch_used;
    zl_dmem *staging;    /* host-visible, for uploads and reads where device memory is not host-visible */
    zl_dmem *dummy;      /* bound to unused bindings */
} zl_vk;

/* One binding of a dispatch: mem at byte offset off (aligned down by zl_vk_dispatch as the device needs; shift
 * receives the bytes between the aligned start and off), range bytes (clamped to the allocation and the device's
 * largest binding). */
typedef struct zl_vk_bind {
    zl_dmem *mem;
    uint64_t off, range;
} zl_vk_bind;

/* Records one dispatch of shader s with n bindings (at most ZL_VK_BINDINGS; NULL mem: the dummy buffer), push
 * constants, over groups (gx, gy, gz). shift[i] receives binding i's byte shift (see zl_vk_bind). Returns ZL_OK,
 * ZL_EIO when the device is lost or a pipeline cannot be made. The push constants must be written after the shifts
 * are known, so the caller passes a function-free protocol: call zl_vk_binds first, then zl_vk_dispatch. */
int zl_vk_binds(zl_vk *v, zl_vk_bind *b, int n, uint64_t *shift);
int zl_vk_dispatch(zl_vk *v, zl_vk_shader s, const zl_vk_bind *b, int n, const void *push, uint32_t push_bytes,
                   uint32_t gx, uint32_t gy, uint32_t gz);
/* Copies bytes of host data into the scratch ring; *out is its binding. */
int zl_vk_scratch(zl_vk *v, const void *data, uint64_t bytes, zl_vk_bind *out);
/* A 2-D group count covering n groups within the device's per-dimension limit. */
void zl_vk_groups(const zl_vk *v, uint64_t n, uint32_t *gx, uint32_t *gy);
/* Submits what is recorded and waits (ZL_OK, or ZL_EIO on a lost device). */
int zl_vk_flush(zl_vk *v);

/* The ops (vk_ops.c) installed into the device's table. */
void zl_vk_ops_fill(zl_dev_ops *ops);
/* The shader of a weight type for mul_mv (get_rows: + 10), or -1. */
int zl_vk_wtype_index(uint32_t type);

#endif
