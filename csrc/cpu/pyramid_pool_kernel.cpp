// CPU kernels of roi_pool and spp_pool (a pyramid of max-pooling grids).
//
// Layout and parallelisation: the feature map is read channels-last (NHWC), so
// that the max over one bin is an element-wise max of contiguous channel
// vectors, which the compiler vectorises; torchvision's NCHW loop instead walks
// each channel plane with a stride per bin cell. Channels are processed in
// vectors: each cell of a bin is one sequential read of all channels, and the
// running maxima of one bin (a few KB) stay in L1. A RoI's window is brought
// into cache once and every level of the pyramid is pooled from it. RoIs are spread over threads with
// at::parallel_for (they write disjoint output rows). The backward pass
// parallelises over channels, so that threads write disjoint gradient planes
// and need no atomics.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cfloat>
#include <type_traits>

#include "../pool_ops.h"

namespace detaccel {
namespace {

// Integer type as wide as scalar_t, for vector masks and argmax lanes.
template <typename scalar_t>
using SameWidthInt = std::conditional_t<sizeof(scalar_t) == 8, int64_t, int32_t>;

// Fixed-width vectors (GCC/Clang vector extensions) so that the max/argmax
// update is branch-free SIMD whatever the target instruction set.
template <typename scalar_t, int kVectorBytes>
struct ChannelVector {
  static constexpr int kBytes = kVectorBytes;
  static constexpr int kLanes = kBytes / sizeof(scalar_t);
  typedef scalar_t Value __attribute__((vector_size(kBytes)));
  typedef SameWidthInt<scalar_t> Index __attribute__((vector_size(kBytes)));
};

// Vector width of the widest instruction set dispatched to (AVX2); channels
// are padded to a whole number of such vectors.
constexpr int kMaxVectorBytes = 32;

// Pools every level of the pyramid for one RoI. `plane_nhwc` is the RoI's
// image as [H, W, padded_channels]; `best` and `best_index` are scratch
// vectors of padded_channels lanes (they stay in L1 while a bin is pooled);
// `staged_*` hold [bins, padded_channels] results before the transposition.
template <typename scalar_t, int kVectorBytes>
__attribute__((always_inline)) inline void pool_one_roi(
    const scalar_t* plane_nhwc, const scalar_t* roi, int channels, int padded_channels, int height, int width,
    scalar_t spatial_scale, const PyramidLayout& layout, scalar_t* out_row, int* argmax_row, void* best_scratch,
    void* index_scratch, scalar_t* staged_values, SameWidthInt<scalar_t>* staged_index) {
  using Vec = ChannelVector<scalar_t, kVectorBytes>;
  using Value = typename Vec::Value;
  using Index = typename Vec::Index;
  using IndexInt = SameWidthInt<scalar_t>;
  const int vectors = padded_channels / Vec::kLanes;
  auto* best = static_cast<Value*>(best_scratch);
  auto* best_index = static_cast<Index*>(index_scratch);
  const RoiWindow window = roi_window<scalar_t>(roi[1], roi[2], roi[3], roi[4], spatial_scale);
  for (int level = 0; level < layout.num_levels; ++level) {
    const int bins_h = layout.bins_h[level], bins_w = layout.bins_w[level];
    for (int ph = 0; ph < bins_h; ++ph) {
      int h_begin, h_end;
      bin_range<scalar_t>(ph, bins_h, window.start_h, window.height, height, &h_begin, &h_end);
      for (int pw = 0; pw < bins_w; ++pw) {
        int w_begin, w_end;
        bin_range<scalar_t>(pw, bins_w, window.start_w, window.width, width, &w_begin, &w_end);
        const bool empty = h_end <= h_begin || w_end <= w_begin;
        const Value init = Value{} + (empty ? scalar_t(0) : static_cast<scalar_t>(-FLT_MAX));
        for (int v = 0; v < vectors; ++v) {
          best[v] = init;
          best_index[v] = Index{} - 1;
        }
        for (int h = h_begin; h < h_end; ++h) {
          for (int w = w_begin; w < w_end; ++w) {
            const int cell = h * width + w;
            const Index cell_vector = Index{} + static_cast<IndexInt>(cell);
            // One cell is padded_channels contiguous values: a sequential read.
            const scalar_t* values = plane_nhwc + static_cast<int64_t>(cell) * padded_channels;
            // Strict '>' keeps the first maximum in row-major order, as torchvision does.
            for (int v = 0; v < vectors; ++v) {
              Value x;
              __builtin_memcpy(&x, values + v * Vec::kLanes, sizeof(Value));
              // Bitwise select: portable to every SIMD level (SSE2 has no blend).
              const Index greater = x > best[v];
              best[v] = (Value)(((Index)x & greater) | ((Index)best[v] & ~greater));
              best_index[v] = (cell_vector & greater) | (best_index[v] & ~greater);
            }
          }
        }
        // Results are staged bin-major ([bins, C], plain vector stores) and
        // transposed once per RoI into the channel-major output row.
        const int bin = layout.bin_offset[level] + ph * bins_w + pw;
        __builtin_memcpy(staged_values + static_cast<int64_t>(bin) * padded_channels, best,
                         sizeof(Value) * vectors);
        __builtin_memcpy(staged_index + static_cast<int64_t>(bin) * padded_channels, best_index,
                         sizeof(Index) * vectors);
      }
    }
  }
  for (int level = 0; level < layout.num_levels; ++level) {
    const int first = layout.bin_offset[level], bins = layout.bin_offset[level + 1] - first;
    scalar_t* out = out_row + static_cast<int64_t>(channels) * first;
    int* arg = argmax_row != nullptr ? argmax_row + static_cast<int64_t>(channels) * first : nullptr;
    for (int c = 0; c < channels; ++c) {
      for (int j = 0; j < bins; ++j) {
        const int64_t source = static_cast<int64_t>(first + j) * padded_channels + c;
        out[c * bins + j] = staged_values[source];
        if (arg != nullptr) {
          arg[c * bins + j] = static_cast<int>(staged_index[source]);
        }
      }
    }
  }
}

// The same loop compiled for SSE2 (any x86-64) and for AVX2, chosen at run time.
#define DETACCEL_POOL_ARGS                                                                                       \
  const scalar_t *plane_nhwc, const scalar_t *roi, int channels, int padded_channels, int height, int width,      \
      scalar_t spatial_scale, const PyramidLayout &layout, scalar_t *out_row, int *argmax_row, void *best_scratch, \
      void *index_scratch, scalar_t *staged_values, SameWidthInt<scalar_t> *staged_index
#define DETACCEL_POOL_CALL                                                                                          \
  plane_nhwc, roi, channels, padded_channels, height, width, spatial_scale, layout, out_row, argmax_row, best_scratch, \
      index_scratch, staged_values, staged_index

template <typename scalar_t>
void pool_one_roi_sse2(DETACCEL_POOL_ARGS) {
  pool_one_roi<scalar_t, 16>(DETACCEL_POOL_CALL);
}

template <typename scalar_t>
__attribute__((target("avx2"))) void pool_one_roi_avx2(DETACCEL_POOL_ARGS) {
  pool_one_roi<scalar_t, 32>(DETACCEL_POOL_CALL);
}

char* align_up(char* pointer, int64_t alignment) {
  const auto address = reinterpret_cast<uintptr_t>(pointer);
  return pointer + (alignment - address % alignment) % alignment;
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

std::tuple<at::Tensor, at::Tensor> pyramid_pool_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                           double spatial_scale, const PyramidLayout& layout,
                                                           bool with_argmax) {
  TORCH_CHECK(input.device().is_cpu(), "input: expected a CPU tensor");
  const int64_t num_rois = rois.size(0);
  const int batch = input.size(0), channels = input.size(1), height = input.size(2), width = input.size(3);
  auto shape = pyramid_output_shape(num_rois, channels, layout);
  at::Tensor output = at::empty(shape, input.options());
  at::Tensor argmax = at::empty(with_argmax ? shape : std::vector<int64_t>{0}, input.options().dtype(at::kInt));
  if (output.numel() == 0) {
    return {output.zero_(), argmax.fill_(-1)};
  }
  // NHWC copy of the map, channels padded to a whole number of blocks so that
  // every block is read with full vectors (padding lanes are never written out).
  const int64_t block = kMaxVectorBytes / input.element_size();
  const int64_t padded_channels = (channels + block - 1) / block * block;
  at::Tensor input_nhwc = at::empty({batch, height, width, padded_channels}, input.options());
  input_nhwc.narrow(3, 0, channels).copy_(input.permute({0, 2, 3, 1}));
  if (padded_channels > channels) {
    input_nhwc.narrow(3, channels, padded_channels - channels).zero_();
  }
  const at::Tensor rois_c = rois.contiguous();
  const int64_t row = output.size(1);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool/spp_pool forward (CPU)", [&] {
    const scalar_t* in = input_nhwc.const_data_ptr<scalar_t>();
    const scalar_t* roi_data = rois_c.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    int* arg = with_argmax ? argmax.mutable_data_ptr<int>() : nullptr;
    const scalar_t scale = static_cast<scalar_t>(spatial_scale);
    auto* pool = cpu_has_avx2() ? &pool_one_roi_avx2<scalar_t> : &pool_one_roi_sse2<scalar_t>;
    at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
      // Vector-aligned scratch for the running maxima and argmax of one bin.
      const int64_t scratch_bytes = padded_channels * static_cast<int64_t>(sizeof(scalar_t));
      std::vector<char> scratch(2 * scratch_bytes + kMaxVectorBytes);
      char* best = align_up(scratch.data(), kMaxVectorBytes);
      char* best_index = best + scratch_bytes;
      const int64_t staged = static_cast<int64_t>(layout.bin_offset[layout.num_levels]) * padded_channels;
      std::vector<scalar_t> staged_values(staged);
      std::vector<SameWidthInt<scalar_t>> staged_index(staged);
      for (int64_t k = begin; k < end; ++k) {
        const scalar_t* roi = roi_data + 5 * k;
        const scalar_t batch_value = roi[0];
        if (!(batch_value >= 0 && batch_value < batch)) {
          // Unreachable through the Python wrapper, which rejects such RoIs.
          std::fill(out + k * row, out + (k + 1) * row, scalar_t(0));
          if (arg != nullptr) {
            std::fill(arg + k * row, arg + (k + 1) * row, -1);
          }
          continue;
        }
        const int64_t b = static_cast<int64_t>(batch_value);
        pool(in + b * height * width * padded_channels, roi, channels, padded_channels, height,
                               width, scale, layout, out + k * row, arg != nullptr ? arg + k * row : nullptr, best, best_index,
                               staged_values.data(), staged_index.data());
      }
    });
  });
  return {output, argmax};
}

at::Tensor pyramid_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                     const PyramidLayout& layout, int64_t batch_size, int64_t channels, int64_t height,
                                     int64_t width) {
  TORCH_CHECK(grad.device().is_cpu(), "grad: expected a CPU tensor");
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  const int64_t num_rois = rois.size(0);
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input;
  }
  const at::Tensor rois_c = rois.to(at::kDouble).contiguous();
  const int64_t row = grad.size(1);
  const int64_t plane = height * width;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool/spp_pool backward (CPU)", [&] {
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const int* arg = argmax.const_data_ptr<int>();
    const double* roi_data = rois_c.const_data_ptr<double>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    // Threads own disjoint channels, hence disjoint gradient planes.
    at::parallel_for(0, channels, 1, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t k = 0; k < num_rois; ++k) {
        const double batch_value = roi_data[5 * k];
        if (!(batch_value >= 0 && batch_value < batch_size)) {
          continue;
        }
        const int64_t b = static_cast<int64_t>(batch_value);
        for (int64_t c = c_begin; c < c_end; ++c) {
          scalar_t* target = gi + (b * channels + c) * plane;
          for (int level = 0; level < layout.num_levels; ++level) {
            const int bins = layout.bins_h[level] * layout.bins_w[level];
            const int64_t base = k * row + channels * layout.bin_offset[level] + c * bins;
            for (int j = 0; j < bins; ++j) {
              const int a = arg[base + j];
              if (a >= 0 && a < plane) {
                target[a] += g[base + j];
              }
            }
          }
        }
      }
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(detaccel, CPU, m) {
  m.impl("roi_pool_forward", &roi_pool_forward<pyramid_pool_forward_cpu>);
  m.impl("roi_pool_backward", &roi_pool_backward<pyramid_pool_backward_cpu>);
  m.impl("spp_pool_forward", &spp_pool_forward<pyramid_pool_forward_cpu>);
  m.impl("spp_pool_backward", &spp_pool_backward<pyramid_pool_backward_cpu>);
}

}  // namespace detaccel
