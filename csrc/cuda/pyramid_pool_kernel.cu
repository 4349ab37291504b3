// CUDA kernels of roi_pool and spp_pool (a pyramid of max-pooling grids).
//
// Layout and parallelisation: the feature map is read channels-last (NHWC).
// A block pools one RoI for 32 consecutive channels: lane = channel, so every
// warp load of a bin cell is one coalesced 32-channel row, where torchvision's
// thread-per-output NCHW kernel makes each thread walk its own channel plane.
// The 8 warps of a block share out the bins of every pyramid level (all levels
// in one launch, reading the RoI window through L1/L2 once per block). Results
// go through a shared-memory tile so that the channel-major output rows
// ([C, bins] per level) are written with consecutive addresses per warp.
// Geometry is computed in the input's type for float and double (matching
// torchvision bit for bit) and in float for half and bfloat16.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cfloat>

#include "../pool_ops.h"

namespace detaccel {
namespace {

constexpr int kLanes = 32;      // channels per block
constexpr int kWarps = 8;       // warps per block
constexpr int kTileBins = 64;   // bins staged in shared memory per pass

template <typename scalar_t>
using geometry_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

template <typename scalar_t>
__global__ void pyramid_pool_forward_kernel(const scalar_t* __restrict__ input_nhwc, const scalar_t* __restrict__ rois,
                                            int batch, int channels, int height, int width,
                                            geometry_t<scalar_t> spatial_scale, PyramidLayout layout,
                                            scalar_t* __restrict__ output, int* __restrict__ argmax) {
  using acc_t = at::opmath_type<scalar_t>;
  using geom_t = geometry_t<scalar_t>;
  __shared__ acc_t tile_value[kTileBins][kLanes + 1];
  __shared__ int tile_index[kTileBins][kLanes + 1];

  const int64_t k = blockIdx.x;
  const int c0 = blockIdx.y * kLanes;
  const int lane = threadIdx.x;
  const int channel = c0 + lane;
  const scalar_t* roi = rois + 5 * k;
  const geom_t batch_value = static_cast<geom_t>(roi[0]);
  const bool valid = batch_value >= 0 && batch_value < batch;  // false for NaN too
  const int b = valid ? static_cast<int>(batch_value) : 0;
  const RoiWindow window = roi_window<geom_t>(static_cast<geom_t>(roi[1]), static_cast<geom_t>(roi[2]),
                                              static_cast<geom_t>(roi[3]), static_cast<geom_t>(roi[4]), spatial_scale);
  const int total_bins = layout.bin_offset[layout.num_levels];
  const int64_t row = static_cast<int64_t>(channels) * total_bins;
  const scalar_t* plane = input_nhwc + static_cast<int64_t>(b) * height * width * channels;
  const acc_t lowest = static_cast<acc_t>(static_cast<scalar_t>(-FLT_MAX));

  for (int first = 0; first < total_bins; first += kTileBins) {
    const int count = min(kTileBins, total_bins - first);
    for (int j = threadIdx.y; j < count; j += kWarps) {
      const int bin = first + j;
      const int level = level_of_bin(layout, bin);
      const int local = bin - layout.bin_offset[level];
      const int bins_w = layout.bins_w[level];
      int h_begin, h_end, w_begin, w_end;
      bin_range<geom_t>(local / bins_w, layout.bins_h[level], window.start_h, window.height, height, &h_begin, &h_end);
      bin_range<geom_t>(local % bins_w, bins_w, window.start_w, window.width, width, &w_begin, &w_end);
      const bool empty = !valid || h_end <= h_begin || w_end <= w_begin;
      acc_t best = empty ? acc_t(0) : lowest;
      int best_index = -1;
      if (!empty && channel < channels) {
        for (int h = h_begin; h < h_end; ++h) {
          for (int w = w_begin; w < w_end; ++w) {
            const int cell = h * width + w;
            const acc_t v = static_cast<acc_t>(plane[static_cast<int64_t>(cell) * channels + channel]);
            if (v > best) {  // strict: the first maximum in row-major order wins
              best = v;
              best_index = cell;
            }
          }
        }
      }
      tile_value[j][lane] = best;
      tile_index[j][lane] = best_index;
    }
    __syncthreads();
    for (int e = threadIdx.y * kLanes + lane; e < kLanes * count; e += kLanes * kWarps) {
      const int c_local = e / count, j = e % count;
      const int c = c0 + c_local;
      if (c < channels) {
        const int bin = first + j;
        const int level = level_of_bin(layout, bin);
        const int level_first = layout.bin_offset[level];
        const int bins = layout.bins_h[level] * layout.bins_w[level];
        const int64_t o = k * row + static_cast<int64_t>(channels) * level_first + static_cast<int64_t>(c) * bins +
                          (bin - level_first);
        output[o] = static_cast<scalar_t>(tile_value[j][c_local]);
        if (argmax != nullptr) {
          argmax[o] = tile_index[j][c_local];
        }
      }
    }
    __syncthreads();
  }
}

template <typename scalar_t>
__global__ void pyramid_pool_backward_kernel(int64_t total, const scalar_t* __restrict__ grad,
                                             const int* __restrict__ argmax, const scalar_t* __restrict__ rois,
                                             int batch, int channels, int plane, PyramidLayout layout,
                                             scalar_t* __restrict__ grad_input) {
  const int total_bins = layout.bin_offset[layout.num_levels];
  const int64_t row = static_cast<int64_t>(channels) * total_bins;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int a = argmax[i];
    if (a < 0 || a >= plane) {
      continue;
    }
    const int64_t k = i / row;
    const int r = static_cast<int>(i - k * row);
    int level = 0;
    while (level + 1 < layout.num_levels && r >= channels * layout.bin_offset[level + 1]) {
      ++level;
    }
    const int bins = layout.bins_h[level] * layout.bins_w[level];
    const int c = (r - channels * layout.bin_offset[level]) / bins;
    const float batch_value = static_cast<float>(rois[5 * k]);
    if (!(batch_value >= 0 && batch_value < batch)) {
      continue;
    }
    const int64_t b = static_cast<int64_t>(batch_value);
    gpuAtomicAdd(grad_input + (b * channels + c) * plane + a, grad[i]);
  }
}

std::tuple<at::Tensor, at::Tensor> pyramid_pool_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                                            double spatial_scale, const PyramidLayout& layout,
                                                            bool with_argmax) {
  TORCH_CHECK(input.is_cuda(), "input: expected a CUDA tensor");
  c10::cuda::CUDAGuard guard(input.device());
  const int64_t num_rois = rois.size(0);
  const int batch = input.size(0), channels = input.size(1), height = input.size(2), width = input.size(3);
  auto shape = pyramid_output_shape(num_rois, channels, layout);
  at::Tensor output = at::empty(shape, input.options());
  at::Tensor argmax = at::empty(with_argmax ? shape : std::vector<int64_t>{0}, input.options().dtype(at::kInt));
  if (output.numel() == 0) {
    return {output.zero_(), argmax.fill_(-1)};
  }
  TORCH_CHECK(num_rois < (int64_t{1} << 31), "rois: at most 2^31 - 1 RoIs per call");
  const at::Tensor input_nhwc = input.permute({0, 2, 3, 1}).contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const dim3 grid(static_cast<unsigned>(num_rois), static_cast<unsigned>((channels + kLanes - 1) / kLanes));
  const dim3 block(kLanes, kWarps);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_pool/spp_pool forward (CUDA)", [&] {
    pyramid_pool_forward_kernel<scalar_t><<<grid, block, 0, stream>>>(
        input_nhwc.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(), batch, channels, height, width,
        static_cast<geometry_t<scalar_t>>(spatial_scale), layout, output.mutable_data_ptr<scalar_t>(),
        with_argmax ? argmax.mutable_data_ptr<int>() : nullptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {output, argmax};
}

at::Tensor pyramid_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                      const PyramidLayout& layout, int64_t batch_size, int64_t channels, int64_t height,
                                      int64_t width) {
  TORCH_CHECK(grad.is_cuda(), "grad: expected a CUDA tensor");
  c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) {
    return grad_input;
  }
  const at::Tensor rois_c = rois.contiguous();
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_pool/spp_pool backward (CUDA)", [&] {
    pyramid_pool_backward_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        total, grad.const_data_ptr<scalar_t>(), argmax.const_data_ptr<int>(), rois_c.const_data_ptr<scalar_t>(),
        static_cast<int>(batch_size), static_cast<int>(channels), static_cast<int>(height * width), layout,
        grad_input.mutable_data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(detaccel, CUDA, m) {
  m.impl("roi_pool_forward", &roi_pool_forward<pyramid_pool_forward_cuda>);
  m.impl("roi_pool_backward", &roi_pool_backward<pyramid_pool_backward_cuda>);
  m.impl("spp_pool_forward", &spp_pool_forward<pyramid_pool_forward_cuda>);
  m.impl("spp_pool_backward", &spp_pool_backward<pyramid_pool_backward_cuda>);
}

}  // namespace detaccel
