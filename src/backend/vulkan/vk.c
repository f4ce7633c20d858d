/*
 * vk.c - the Vulkan backend's device: libvulkan loaded at run time, device enumeration and opening, allocations,
 * host <-> device copies, the embedded shaders' pipelines, and recording / submitting dispatches (vk.h says how).
 * The ops themselves are in vk_ops.c.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk.h"

/* ---- the embedded SPIR-V (glslc -mfmt=c output, generated into $(BUILD)/shaders by the Makefile) ---- */
#define SPV(name) static const uint32_t spv_##name[] =
SPV(mul_mv_f32)
#include "shaders/mul_mv_f32.inc"
;
SPV(mul_mv_f16)
#include "shaders/mul_mv_f16.inc"
;
SPV(mul_mv_bf16)
#include "shaders/mul_mv_bf16.inc"
;
SPV(mul_mv_q4_0)
#include "shaders/mul_mv_q4_0.inc"
;
SPV(mul_mv_q4_1)
#include "shaders/mul_mv_q4_1.inc"
;
SPV(mul_mv_q5_0)
#include "shaders/mul_mv_q5_0.inc"
;
SPV(mul_mv_q8_0)
#include "shaders/mul_mv_q8_0.inc"
;
SPV(mul_mv_q4_k)
#include "shaders/mul_mv_q4_k.inc"
;
SPV(mul_mv_q5_k)
#include "shaders/mul_mv_q5_k.inc"
;
SPV(mul_mv_q6_k)
#include "shaders/mul_mv_q6_k.inc"
;
SPV(get_rows_f32)
#include "shaders/get_rows_f32.inc"
;
SPV(get_rows_f16)
#include "shaders/get_rows_f16.inc"
;
SPV(get_rows_bf16)
#include "shaders/get_rows_bf16.inc"
;
SPV(get_rows_q4_0)
#include "shaders/get_rows_q4_0.inc"
;
SPV(get_rows_q4_1)
#include "shaders/get_rows_q4_1.inc"
;
SPV(get_rows_q5_0)
#include "shaders/get_rows_q5_0.inc"
;
SPV(get_rows_q8_0)
#include "shaders/get_rows_q8_0.inc"
;
SPV(get_rows_q4_k)
#include "shaders/get_rows_q4_k.inc"
;
SPV(get_rows_q5_k)
#include "shaders/get_rows_q5_k.inc"
;
SPV(get_rows_q6_k)
#include "shaders/get_rows_q6_k.inc"
;
SPV(rmsnorm)
#include "shaders/rmsnorm.inc"
;
SPV(rope)
#include "shaders/rope.inc"
;
SPV(eltwise)
#include "shaders/eltwise.inc"
;
SPV(kv_store_f16)
#include "shaders/kv_store_f16.inc"
;
SPV(kv_store_f32)
#include "shaders/kv_store_f32.inc"
;
SPV(attention_f16)
#include "shaders/attention_f16.inc"
;
SPV(attention_f32)
#include "shaders/attention_f32.inc"
;
SPV(mul_mv_rt_f32)
#include "shaders/mul_mv_rt_f32.inc"
;
SPV(mul_mv_rt_f16)
#include "shaders/mul_mv_rt_f16.inc"
;
SPV(mul_mv_rt_bf16)
#include "shaders/mul_mv_rt_bf16.inc"
;
SPV(mul_mv_rt_q4_0)
#include "shaders/mul_mv_rt_q4_0.inc"
;
SPV(mul_mv_rt_q4_1)
#include "shaders/mul_mv_rt_q4_1.inc"
;
SPV(mul_mv_rt_q5_0)
#include "shaders/mul_mv_rt_q5_0.inc"
;
SPV(mul_mv_rt_q8_0)
#include "shaders/mul_mv_rt_q8_0.inc"
;
SPV(mul_mv_rt_q4_k)
#include "shaders/mul_mv_rt_q4_k.inc"
;
SPV(mul_mv_rt_q5_k)
#include "shaders/mul_mv_rt_q5_k.inc"
;
SPV(mul_mv_rt_q6_k)
#include "shaders/mul_mv_rt_q6_k.inc"
;
SPV(mul_mm_f32)
#include "shaders/mul_mm_f32.inc"
;
SPV(mul_mm_f16)
#include "shaders/mul_mm_f16.inc"
;
SPV(mul_mm_bf16)
#include "shaders/mul_mm_bf16.inc"
;
SPV(mul_mm_q4_0)
#include "shaders/mul_mm_q4_0.inc"
;
SPV(mul_mm_q4_1)
#include "shaders/mul_mm_q4_1.inc"
;
SPV(mul_mm_q5_0)
#include "shaders/mul_mm_q5_0.inc"
;
SPV(mul_mm_q8_0)
#include "shaders/mul_mm_q8_0.inc"
;
SPV(mul_mm_q4_k)
#include "shaders/mul_mm_q4_k.inc"
;
SPV(mul_mm_q5_k)
#include "shaders/mul_mm_q5_k.inc"
;
SPV(mul_mm_q6_k)
#include "shaders/mul_mm_q6_k.inc"
;
SPV(mul_mm_lanes_f32)
#include "shaders/mul_mm_lanes_f32.inc"
;
SPV(mul_mm_lanes_f16)
#include "shaders/mul_mm_lanes_f16.inc"
;
SPV(mul_mm_lanes_bf16)
#include "shaders/mul_mm_lanes_bf16.inc"
;
SPV(mul_mm_lanes_q4_0)
#include "shaders/mul_mm_lanes_q4_0.inc"
;
SPV(mul_mm_lanes_q4_1)
#include "shaders/mul_mm_lanes_q4_1.inc"
;
SPV(mul_mm_lanes_q5_0)
#include "shaders/mul_mm_lanes_q5_0.inc"
;
SPV(mul_mm_lanes_q8_0)
#include "shaders/mul_mm_lanes_q8_0.inc"
;
SPV(mul_mm_lanes_q4_k)
#include "shaders/mul_mm_lanes_q4_k.inc"
;
SPV(mul_mm_lanes_q5_k)
#include "shaders/mul_mm_lanes_q5_k.inc"
;
SPV(mul_mm_lanes_q6_k)
#include "shaders/mul_mm_lanes_q6_k.inc"
;
#undef SPV

static const struct {
    const uint32_t *code;
    size_t bytes;
} shaders[ZL_VKS_COUNT] = {
#define S(name) {spv_##name, sizeof spv_##name}
    S(mul_mv_f32),   S(mul_mv_f16),   S(mul_mv_bf16),  S(mul_mv_q4_0),   S(mul_mv_q4_1),  S(mul_mv_q5_0),
    S(mul_mv_q8_0),  S(mul_mv_q4_k),  S(mul_mv_q5_k),  S(mul_mv_q6_k),   S(get_rows_f32), S(get_rows_f16),
    S(get_rows_bf16), S(get_rows_q4_0), S(get_rows_q4_1), S(get_rows_q5_0), S(get_rows_q8_0), S(get_rows_q4_k),
    S(get_rows_q5_k), S(get_rows_q6_k), S(rmsnorm),    S(rope),          S(eltwise),      S(kv_store_f16),
    S(kv_store_f32), S(attention_f16), S(attention_f32), S(mul_mv_rt_f32), S(mul_mv_rt_f16), S(mul_mv_rt_bf16),
    S(mul_mv_rt_q4_0), S(mul_mv_rt_q4_1), S(mul_mv_rt_q5_0), S(mul_mv_rt_q8_0), S(mul_mv_rt_q4_k), S(mul_mv_rt_q5_k),
    S(mul_mv_rt_q6_k), S(mul_mm_f32),  S(mul_mm_f16),  S(mul_mm_bf16),  S(mul_mm_q4_0), S(mul_mm_q4_1),
    S(mul_mm_q5_0),  S(mul_mm_q8_0),  S(mul_mm_q4_k),  S(mul_mm_q5_k),  S(mul_mm_q6_k),
    S(mul_mm_lanes_f32), S(mul_mm_lanes_f16), S(mul_mm_lanes_bf16), S(mul_mm_lanes_q4_0), S(mul_mm_lanes_q4_1),
    S(mul_mm_lanes_q5_0), S(mul_mm_lanes_q8_0), S(mul_mm_lanes_q4_k), S(mul_mm_lanes_q5_k), S(mul_mm_lanes_q6_k),
#undef S
};

/* ---- libvulkan, loaded once ---- */
static void *lib;
static PFN_vkGetInstanceProcAddr get_proc;
static PFN_vkCreateInstance create_instance;
static char why[160];

static bool load_lib(void)
{
    if (get_proc)
        return true;
    if (why[0])
        return false;
    const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
    for (size_t i = 0; i < sizeof names / sizeof *names && !lib; i++)
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, sizeof why, "libvulkan.so.1 not found (install a Vulkan driver: libvulkan1 and e.g. "
                                  "mesa-vulkan-drivers)");
        return false;
    }
    *(void **)&get_proc = dlsym(lib, "vkGetInstanceProcAddr");
    if (get_proc)
        create_instance = (PFN_vkCreateInstance)get_proc(NULL, "vkCreateInstance");
    if (!get_proc || !create_instance) {
        snprintf(why, sizeof why, "libvulkan.so.1 has no vkGetInstanceProcAddr / vkCreateInstance");
        get_proc = NULL;
        return false;
    }
    return true;
}

static VkResult make_instance(VkInstance *out)
{
    const VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "zili",
                                   .apiVersion = VK_API_VERSION_1_1};
    const VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    return create_instance(&ci, NULL, out);
}

static int load_instance_fns(VkInstance inst, zl_vk_fn *fn)
{
    int missing = 0;
#define ZL_VK_LOAD(name)                                                                                            \
    if (!(fn->name = (PFN_##name)get_proc(inst, #name)))                                                        \
        missing++;
    ZL_VK_FUNCS(ZL_VK_LOAD)
#undef ZL_VK_LOAD
    return missing;
}

/* The physical devices with a compute queue, up to max. */
static uint32_t list_phys(VkInstance inst, const zl_vk_fn *fn, VkPhysicalDevice *out, uint32_t max)
{
    uint32_t n = 0;
    if (fn->vkEnumeratePhysicalDevices(inst, &n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkPhysicalDevice all[16];
    if (n > 16)
        n = 16;
    if (fn->vkEnumeratePhysicalDevices(inst, &n, all) < 0)
        return 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n && k < max; i++) {
        uint32_t nq = 0;
        VkQueueFamilyProperties qf[16];
        fn->vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, NULL);
        if (nq > 16)
            nq = 16;
        fn->vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, qf);
        for (uint32_t q = 0; q < nq; q++)
            if (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) {
                out[k++] = all[i];
                break;
            }
    }
    return k;
}

static void fill_info(const zl_vk_fn *fn, VkPhysicalDevice p, int index, zl_dev_info *info)
{
    memset(info, 0, sizeof *info);
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
                                                 .pNext = &sg};
    VkPhysicalDeviceProperties2 pr = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
    fn->vkGetPhysicalDeviceProperties2(p, &pr);
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDeviceFeatures2 ft = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f16};
    fn->vkGetPhysicalDeviceFeatures2(p, &ft);
    VkPhysicalDeviceMemoryProperties mp;
    fn->vkGetPhysicalDeviceMemoryProperties(p, &mp);

    snprintf(info->name, sizeof info->name, "%.127s", pr.properties.deviceName);
    snprintf(info->kind, sizeof info->kind, "vulkan");
    const uint32_t av = pr.properties.apiVersion;
    snprintf(info->driver, sizeof info->driver, "Vulkan %u.%u.%u", VK_API_VERSION_MAJOR(av),
             VK_API_VERSION_MINOR(av), VK_API_VERSION_PATCH(av));
    info->index = index;
    for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
        if ((mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && mp.memoryHeaps[h].size > info->memory)
            info->memory = mp.memoryHeaps[h].size;
    info->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : (1ull << 30);
    info->max_binding = pr.properties.limits.maxStorageBufferRange;
    info->alignment = pr.properties.limits.minStorageBufferOffsetAlignment;
    info->subgroup_size = sg.subgroupSize;
    if (f16.shaderFloat16)
        info->features |= ZL_DEV_F16;
    if (f16.shaderInt8)
        info->features |= ZL_DEV_INT8_DOT;
    if ((sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) && (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT))
        info->features |= ZL_DEV_SUBGROUPS;
    if (pr.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
        pr.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU)
        info->features |= ZL_DEV_UNIFIED;
}

/* One instance for the process, made on first use and kept: the loader unloads the driver (ICD) when the last
 * instance goes, and drivers keep state of their own that outlives it (Mesa's lavapipe leaks a few hundred bytes
 * per load), so every device opened shares it. */
static pthread_mutex_t inst_lock = PTHREAD_MUTEX_INITIALIZER;
static VkInstance g_inst;
static zl_vk_fn g_fn;

static bool get_instance(void)
{
    pthread_mutex_lock(&inst_lock);
    bool ok = g_inst != VK_NULL_HANDLE;
    if (!ok && !why[0] && load_lib()) {
        VkInstance inst;
        const VkResult r = make_instance(&inst);
        if (r != VK_SUCCESS) {
            snprintf(why, sizeof why, "vkCreateInstance failed (%d): no Vulkan driver (ICD) installed?", (int)r);
        } else if (load_instance_fns(inst, &g_fn) != 0) {
            snprintf(why, sizeof why, "libvulkan lacks Vulkan 1.1 entry points");
            PFN_vkDestroyInstance destroy = (PFN_vkDestroyInstance)get_proc(inst, "vkDestroyInstance");
            if (destroy)
                destroy(inst, NULL);
        } else {
            g_inst = inst;
            ok = true;
        }
    }
    pthread_mutex_unlock(&inst_lock);
    return ok;
}

static int vk_enumerate(zl_dev_info *out, int max)
{
    if (!get_instance())
        return 0;
    VkPhysicalDevice p[16];
    const uint32_t np = list_phys(g_inst, &g_fn, p, 16);
    int n = 0;
    for (uint32_t i = 0; i < np; i++) {
        if (n < max && out)
            fill_info(&g_fn, p[i], (int)i, &out[n]);
        n++;
    }
    if (np == 0) {
        pthread_mutex_lock(&inst_lock);
        snprintf(why, sizeof why, "the Vulkan driver lists no device with a compute queue");
        pthread_mutex_unlock(&inst_lock);
    }
    return n;
}

static const char *vk_why_none(void)
{
    return why;
}

/* ---- allocations ---- */
static int find_mem_type(const VkPhysicalDeviceMemoryProperties *mp, uint32_t bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < mp->memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp->memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

static int mem_alloc(zl_vk *v, uint64_t bytes, uint32_t type, zl_dmem **out, zl_err *err)
{
    const zl_vk_fn *f = &v->fn;
    if (bytes == 0)
        bytes = 16;
    bytes = (bytes + 15) & ~(uint64_t)15;
    if (bytes > v->base.info.max_alloc)
        return zl_err_set(err, ZL_ENOMEM, "vulkan: allocation of %.1f MiB exceeds the device's largest (%.1f MiB)",
                          (double)bytes / 1048576.0, (double)v->base.info.max_alloc / 1048576.0);
    zl_dmem *m = calloc(1, sizeof *m);
    if (!m)
        return zl_err_set(err, ZL_ENOMEM, "vulkan: out of host memory");
    const VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = bytes,
                                   .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                            VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                   .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    if (f->vkCreateBuffer(v->dev, &bi, NULL, &m->buf) != VK_SUCCESS) {
        free(m);
        return zl_err_set(err, ZL_ENOMEM, "vulkan: cannot create a buffer of %.1f MiB", (double)bytes / 1048576.0);
    }
    VkMemoryRequirements req;
    f->vkGetBufferMemoryRequirements(v->dev, m->buf, &req);
    if (!(req.memoryTypeBits & (1u << type))) {
        f->vkDestroyBuffer(v->dev, m->buf, NULL);
        free(m);
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: buffers cannot use the chosen memory type");
    }
    const VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                                     .memoryTypeIndex = type};
    if (f->vkAllocateMemory(v->dev, &ai, NULL, &m->mem) != VK_SUCCESS) {
        f->vkDestroyBuffer(v->dev, m->buf, NULL);
        free(m);
        return zl_err_set(err, ZL_ENOMEM, "vulkan: out of device memory for %.1f MiB", (double)bytes / 1048576.0);
    }
    f->vkBindBufferMemory(v->dev, m->buf, m->mem, 0);
    m->size = bytes;
    VkPhysicalDeviceMemoryProperties mp;
    f->vkGetPhysicalDeviceMemoryProperties(v->phys, &mp);
    if (mp.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
        if (f->vkMapMemory(v->dev, m->mem, 0, VK_WHOLE_SIZE, 0, &m->map) != VK_SUCCESS)
            m->map = NULL;
    }
    *out = m;
    return ZL_OK;
}

static void mem_free(zl_vk *v, zl_dmem *m)
{
    if (!m)
        return;
    if (m->map)
        v->fn.vkUnmapMemory(v->dev, m->mem);
    v->fn.vkDestroyBuffer(v->dev, m->buf, NULL);
    v->fn.vkFreeMemory(v->dev, m->mem, NULL);
    free(m);
}

static int vk_alloc(zl_dev *d, uint64_t bytes, zl_dmem **out, zl_err *err)
{
    zl_vk *v = (zl_vk *)d;
    return mem_alloc(v, bytes, v->mem_type_dev, out, err);
}

static void vk_free(zl_dev *d, zl_dmem *m)
{
    zl_vk *v = (zl_vk *)d;
    if (m && v->recording)
        zl_vk_flush(v); /* recorded work may still name it */
    mem_free(v, m);
}

/* ---- recording and submitting ---- */
static int begin(zl_vk *v)
{
    if (v->lost)
        return ZL_EIO;
    if (v->recording)
        return ZL_OK;
    const VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                         .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (v->fn.vkBeginCommandBuffer(v->cmd, &bi) != VK_SUCCESS) {
        v->lost = true;
        return ZL_EIO;
    }
    v->recording = true;
    v->n_recorded = 0;
    return ZL_OK;
}

int zl_vk_flush(zl_vk *v)
{
    const zl_vk_fn *f = &v->fn;
    if (v->lost)
        return ZL_EIO;
    if (v->recording) {
        v->recording = false;
        if (f->vkEndCommandBuffer(v->cmd) != VK_SUCCESS) {
            v->lost = true;
            return ZL_EIO;
        }
        if (v->n_recorded > 0) {
            const VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                                     .pCommandBuffers = &v->cmd};
            if (f->vkQueueSubmit(v->queue, 1, &si, v->fence) != VK_SUCCESS ||
                f->vkWaitForFences(v->dev, 1, &v->fence, VK_TRUE, UINT64_MAX) != VK_SUCCESS) {
                v->lost = true;
                return ZL_EIO;
            }
            f->vkResetFences(v->dev, 1, &v->fence);
        }
        f->vkResetCommandBuffer(v->cmd, 0);
    }
    f->vkResetDescriptorPool(v->dev, v->dpool, 0);
    v->sets_used = 0;
    v->scratch_used = 0;
    return ZL_OK;
}

static int vk_sync(zl_dev *d)
{
    return zl_vk_flush((zl_vk *)d);
}

static void barrier(zl_vk *v)
{
    const VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                                .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                                 VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    v->fn.vkCmdPipelineBarrier(v->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                               VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0,
                               NULL, 0, NULL);
}

static int pipeline(zl_vk *v, zl_vk_shader s)
{
    if (v->pipe[s])
        return ZL_OK;
    const zl_vk_fn *f = &v->fn;
    const VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                         .codeSize = shaders[s].bytes, .pCode = shaders[s].code};
    VkShaderModule mod;
    if (f->vkCreateShaderModule(v->dev, &mi, NULL, &mod) != VK_SUCCESS)
        return ZL_EIO;
    const VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod, .pName = "main"},
        .layout = v->pl};
    const VkResult r = f->vkCreateComputePipelines(v->dev, VK_NULL_HANDLE, 1, &ci, NULL, &v->pipe[s]);
    f->vkDestroyShaderModule(v->dev, mod, NULL);
    return r == VK_SUCCESS ? ZL_OK : ZL_EIO;
}

int zl_vk_binds(zl_vk *v, zl_vk_bind *b, int n, uint64_t *shift)
{
    for (int i = 0; i < n; i++) {
        if (!b[i].mem) {
            b[i] = (zl_vk_bind){v->dummy, 0, v->dummy->size};
            shift[i] = 0;
            continue;
        }
        const uint64_t start = b[i].off - b[i].off % v->align;
        shift[i] = b[i].off - start;
        /* whole words: shaders read weights as uint[], and a slice may end mid-word (allocations are rounded
         * up to 16 bytes, so the rounded range stays inside) */
        uint64_t range = (b[i].range + shift[i] + 3) & ~(uint64_t)3;
        if (start >= b[i].mem->size)
            return ZL_EINVAL;
        if (range > b[i].mem->size - start)
            range = b[i].mem->size - start;
        if (range > v->max_range)
            range = v->max_range;
        b[i].off = start;
        b[i].range = range;
    }
    return ZL_OK;
}

void zl_vk_groups(const zl_vk *v, uint64_t n, uint32_t *gx, uint32_t *gy)
{
    if (n <= v->max_groups) {
        *gx = (uint32_t)(n ? n : 1);
        *gy = 1;
        return;
    }
    *gx = v->max_groups;
    *gy = (uint32_t)((n + v->max_groups - 1) / v->max_groups);
}

int zl_vk_dispatch(zl_vk *v, zl_vk_shader s, const zl_vk_bind *b, int n, const void *push, uint32_t push_bytes,
                   uint32_t gx, uint32_t gy, uint32_t gz)
{
    const zl_vk_fn *f = &v->fn;
    int rc;
    if (n > ZL_VK_BINDINGS || push_bytes > ZL_VK_PUSH_BYTES)
        return ZL_EINVAL;
    if ((rc = pipeline(v, s)) != ZL_OK)
        return rc;
    if (v->sets_used >= ZL_VK_SETS && (rc = zl_vk_flush(v)) != ZL_OK)
        return rc;
    if ((rc = begin(v)) != ZL_OK)
        return rc;
    VkDescriptorSet set;
    const VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                            .descriptorPool = v->dpool, .descriptorSetCount = 1,
                                            .pSetLayouts = &v->dsl};
    if (f->vkAllocateDescriptorSets(v->dev, &ai, &set) != VK_SUCCESS)
        return ZL_EIO;
    v->sets_used++;
    VkDescriptorBufferInfo bi[ZL_VK_BINDINGS];
    VkWriteDescriptorSet w[ZL_VK_BINDINGS];
    for (int i = 0; i < ZL_VK_BINDINGS; i++) {
        const zl_vk_bind *x = i < n ? &b[i] : &(zl_vk_bind){v->dummy, 0, v->dummy->size};
        bi[i] = (VkDescriptorBufferInfo){x->mem->buf, x->off, x->range};
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set,
                                      .dstBinding = (uint32_t)i, .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &bi[i]};
    }
    f->vkUpdateDescriptorSets(v->dev, ZL_VK_BINDINGS, w, 0, NULL);
    f->vkCmdBindPipeline(v->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, v->pipe[s]);
    f->vkCmdBindDescriptorSets(v->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, v->pl, 0, 1, &set, 0, NULL);
    if (push_bytes)
        f->vkCmdPushConstants(v->cmd, v->pl, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
    f->vkCmdDispatch(v->cmd, gx, gy, gz);
    barrier(v);
    v->n_recorded++;
    return ZL_OK;
}

int zl_vk_scratch(zl_vk *v, const void *data, uint64_t bytes, zl_vk_bind *out)
{
    const uint64_t need = (bytes + 255) & ~(uint64_t)255;
    if (need > v->scratch->size)
        return ZL_ENOMEM;
    int rc;
    if (v->scratch_used + need > v->scratch->size && (rc = zl_vk_flush(v)) != ZL_OK)
        return rc;
    memcpy((char *)v->scratch->map + v->scratch_used, data, bytes);
    *out = (zl_vk_bind){v->scratch, v->scratch_used, bytes ? bytes : 4};
    v->scratch_used += need;
    return ZL_OK;
}

/* ---- copies ---- */
enum { STAGING_BYTES = 16u << 20, SCRATCH_BYTES = 16u << 20 };

static int vk_write(zl_dev *d, zl_buf dst, const void *src, uint64_t bytes)
{
    zl_vk *v = (zl_vk *)d;
    int rc;
    if (!dst.mem || dst.off > dst.mem->size || bytes > dst.mem->size - dst.off)
        return ZL_EINVAL;
    if ((rc = zl_vk_flush(v)) != ZL_OK) /* queued ops may still read the old bytes */
        return rc;
    if (dst.mem->map) {
        memcpy((char *)dst.mem->map + dst.off, src, bytes);
        return ZL_OK;
    }
    for (uint64_t done = 0; done < bytes;) {
        const uint64_t n = bytes - done < STAGING_BYTES ? bytes - done : STAGING_BYTES;
        memcpy(v->staging->map, (const char *)src + done, n);
        if ((rc = begin(v)) != ZL_OK)
            return rc;
        const VkBufferCopy c = {0, dst.off + done, n};
        v->fn.vkCmdCopyBuffer(v->cmd, v->staging->buf, dst.mem->buf, 1, &c);
        v->n_recorded++;
        if ((rc = zl_vk_flush(v)) != ZL_OK)
            return rc;
        done += n;
    }
    return ZL_OK;
}

static int vk_read(zl_dev *d, void *dst, zl_buf src, uint64_t bytes)
{
    zl_vk *v = (zl_vk *)d;
    int rc;
    if (!src.mem || src.off > src.mem->size || bytes > src.mem->size - src.off)
        return ZL_EINVAL;
    if ((rc = zl_vk_flush(v)) != ZL_OK)
        return rc;
    if (src.mem->map) {
        memcpy(dst, (const char *)src.mem->map + src.off, bytes);
        return ZL_OK;
    }
    for (uint64_t done = 0; done < bytes;) {
        const uint64_t n = bytes - done < STAGING_BYTES ? bytes - done : STAGING_BYTES;
        if ((rc = begin(v)) != ZL_OK)
            return rc;
        const VkBufferCopy c = {src.off + done, 0, n};
        v->fn.vkCmdCopyBuffer(v->cmd, src.mem->buf, v->staging->buf, 1, &c);
        v->n_recorded++;
        if ((rc = zl_vk_flush(v)) != ZL_OK)
            return rc;
        memcpy((char *)dst + done, v->staging->map, n);
        done += n;
    }
    return ZL_OK;
}

/* ---- open / close ---- */
static void vk_close(zl_dev *d)
{
    zl_vk *v = (zl_vk *)d;
    if (!v)
        return;
    const zl_vk_fn *f = &v->fn;
    if (v->dev) {
        f->vkDeviceWaitIdle(v->dev);
        for (int i = 0; i < ZL_VKS_COUNT; i++)
            if (v->pipe[i])
                f->vkDestroyPipeline(v->dev, v->pipe[i], NULL);
        mem_free(v, v->scratch);
        mem_free(v, v->staging);
        mem_free(v, v->dummy);
        if (v->fence)
            f->vkDestroyFence(v->dev, v->fence, NULL);
        if (v->cpool)
            f->vkDestroyCommandPool(v->dev, v->cpool, NULL);
        if (v->dpool)
            f->vkDestroyDescriptorPool(v->dev, v->dpool, NULL);
        if (v->pl)
            f->vkDestroyPipelineLayout(v->dev, v->pl, NULL);
        if (v->dsl)
            f->vkDestroyDescriptorSetLayout(v->dev, v->dsl, NULL);
        f->vkDestroyDevice(v->dev, NULL);
    }
    free(v);
}

static zl_dev_ops vk_ops;

static int vk_open(int index, zl_dev **out, zl_err *err)
{
    if (!get_instance())
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: %s", why);
    zl_vk *v = calloc(1, sizeof *v);
    if (!v)
        return zl_err_set(err, ZL_ENOMEM, "vulkan: out of memory");
    zl_vk_fn *f = &v->fn;
    v->inst = g_inst;
    v->fn = g_fn;
    VkResult r;
    VkPhysicalDevice p[16];
    const uint32_t np = list_phys(v->inst, f, p, 16);
    if (index < 0 || (uint32_t)index >= np) {
        vk_close(&v->base);
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: no device %d (%u with compute found)", index, np);
    }
    v->phys = p[index];
    fill_info(f, v->phys, index, &v->base.info);

    VkQueueFamilyProperties qf[16];
    uint32_t nq = 16;
    f->vkGetPhysicalDeviceQueueFamilyProperties(v->phys, &nq, qf);
    for (uint32_t q = 0; q < nq; q++)
        if (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            v->queue_family = q;
            break;
        }
    const float prio = 1.0f;
    const VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                        .queueFamilyIndex = v->queue_family, .queueCount = 1,
                                        .pQueuePriorities = &prio};
    const VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1,
                                   .pQueueCreateInfos = &qi};
    if ((r = f->vkCreateDevice(v->phys, &di, NULL, &v->dev)) != VK_SUCCESS) {
        v->dev = VK_NULL_HANDLE;
        vk_close(&v->base);
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: vkCreateDevice failed (%d)", (int)r);
    }
    f->vkGetDeviceQueue(v->dev, v->queue_family, 0, &v->queue);

    VkPhysicalDeviceProperties pr;
    f->vkGetPhysicalDeviceProperties(v->phys, &pr);
    v->align = pr.limits.minStorageBufferOffsetAlignment ? pr.limits.minStorageBufferOffsetAlignment : 16;
    v->max_range = pr.limits.maxStorageBufferRange;
    v->max_groups = pr.limits.maxComputeWorkGroupCount[0] < pr.limits.maxComputeWorkGroupCount[1]
                        ? pr.limits.maxComputeWorkGroupCount[0]
                        : pr.limits.maxComputeWorkGroupCount[1];
    if (v->max_groups > 65535)
        v->max_groups = 65535;
    const char *mv = getenv("ZILI_VK_MATVEC");
    v->mv_rows = mv && !strcmp(mv, "rows") ? true
                 : mv && !strcmp(mv, "lanes") ? false
                                              : pr.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    /* The tiled matmul takes batches of 16 tokens or more (where it pays off on lavapipe) when the mat-vec is the
     * one-thread-a-row shape: mul_mm.comp sums each output in that shape's order, so a token's logits do not
     * depend on how many tokens share its batch (the server's batching invariance). The 16-lane shape has its own
     * tiled matmul in its order (mul_mm_lanes.comp, bit-identical too) but it is off by default there: no GPU has
     * measured it yet. ZILI_VK_MM_MIN=N moves the threshold (0 = never tiled), for tests and tuning. */
    const char *mm = getenv("ZILI_VK_MM_MIN");
    v->mm_min = v->mv_rows ? 16 : INT32_MAX;
    if (mm && *mm) {
        char *end;
        const long n = strtol(mm, &end, 10);
        if (*end == '\0' && n >= 0 && n <= 1 << 30)
            v->mm_min = n ? (int32_t)n : INT32_MAX;
    }

    /* Memory: device-local for tensors; host-visible too when that type lives on the largest device-local heap
     * (unified memory, lavapipe, resizable BAR), so uploads and reads are plain copies. */
    VkPhysicalDeviceMemoryProperties mp;
    f->vkGetPhysicalDeviceMemoryProperties(v->phys, &mp);
    const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int td = find_mem_type(&mp, ~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | hv);
    if (td >= 0 && mp.memoryHeaps[mp.memoryTypes[td].heapIndex].size < v->base.info.memory)
        td = -1;
    v->dev_host_visible = td >= 0;
    if (td < 0)
        td = find_mem_type(&mp, ~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (td < 0)
        td = find_mem_type(&mp, ~0u, 0);
    const int th = find_mem_type(&mp, ~0u, hv);
    if (td < 0 || th < 0) {
        vk_close(&v->base);
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: %s has no usable memory types", v->base.info.name);
    }
    v->mem_type_dev = (uint32_t)td;
    v->mem_type_host = (uint32_t)th;

    VkDescriptorSetLayoutBinding lb[ZL_VK_BINDINGS];
    for (int i = 0; i < ZL_VK_BINDINGS; i++)
        lb[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i,
                                               .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                               .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    const VkDescriptorSetLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                                .bindingCount = ZL_VK_BINDINGS, .pBindings = lb};
    const VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, ZL_VK_PUSH_BYTES};
    const VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, ZL_VK_SETS * ZL_VK_BINDINGS};
    const VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                            .maxSets = ZL_VK_SETS, .poolSizeCount = 1, .pPoolSizes = &ps};
    const VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                         .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                         .queueFamilyIndex = v->queue_family};
    const VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    bool ok = f->vkCreateDescriptorSetLayout(v->dev, &li, NULL, &v->dsl) == VK_SUCCESS;
    if (ok) {
        const VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                                .setLayoutCount = 1, .pSetLayouts = &v->dsl,
                                                .pushConstantRangeCount = 1, .pPushConstantRanges = &pcr};
        ok = f->vkCreatePipelineLayout(v->dev, &pli, NULL, &v->pl) == VK_SUCCESS;
    }
    ok = ok && f->vkCreateDescriptorPool(v->dev, &dpi, NULL, &v->dpool) == VK_SUCCESS;
    ok = ok && f->vkCreateCommandPool(v->dev, &cpi, NULL, &v->cpool) == VK_SUCCESS;
    if (ok) {
        const VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                                 .commandPool = v->cpool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                                 .commandBufferCount = 1};
        ok = f->vkAllocateCommandBuffers(v->dev, &cai, &v->cmd) == VK_SUCCESS;
    }
    ok = ok && f->vkCreateFence(v->dev, &fi, NULL, &v->fence) == VK_SUCCESS;
    if (!ok) {
        vk_close(&v->base);
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: cannot create pipelines' layout, pools or fence");
    }
    int rc;
    if ((rc = mem_alloc(v, SCRATCH_BYTES, v->mem_type_host, &v->scratch, err)) != ZL_OK ||
        (rc = mem_alloc(v, STAGING_BYTES, v->mem_type_host, &v->staging, err)) != ZL_OK ||
        (rc = mem_alloc(v, 256, v->mem_type_dev, &v->dummy, err)) != ZL_OK) {
        vk_close(&v->base);
        return rc;
    }
    if (!v->scratch->map || !v->staging->map) {
        vk_close(&v->base);
        return zl_err_set(err, ZL_EUNSUPPORTED, "vulkan: cannot map host-visible memory");
    }
    v->base.ops = &vk_ops;
    *out = &v->base;
    return ZL_OK;
}

static bool vk_supports(zl_dev *d, zl_op op, uint32_t type, const int64_t shape[4])
{
    (void)d;
    switch (op) {
    case ZL_OP_GET_ROWS:
    case ZL_OP_MATMUL:
        return zl_vk_wtype_index(type) >= 0 && shape[0] > 0 && shape[0] < (1 << 24);
    case ZL_OP_KV_STORE:
        return type == 0 || type == 1;
    case ZL_OP_ATTENTION: /* shape {head_dim, n_head, n_head_kv} */
        return (type == 0 || type == 1) && shape[0] > 0 && shape[0] <= 256 && shape[0] % 2 == 0;
    default:
        return op < ZL_OP_COUNT;
    }
}

static zl_dev_ops vk_ops = {
    .close = vk_close, .supports = vk_supports, .alloc = vk_alloc, .free = vk_free, .write = vk_write,
    .read = vk_read, .sync = vk_sync,
};

static const zl_backend vk_backend = {.name = "vulkan", .enumerate = vk_enumerate, .open = vk_open,
                                      .why_none = vk_why_none};

const zl_backend *zl_backend_vulkan(void)
{
    static bool filled;
    if (!filled) {
        zl_vk_ops_fill(&vk_ops);
        filled = true;
    }
    return &vk_backend;
}
