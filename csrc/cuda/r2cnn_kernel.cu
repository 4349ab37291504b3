// CUDA kernel of R²-CNN's dense steps (integrate feature map, feature level).
// One block per (image, channel) plane reduces the channel maximum; a grid of
// threads over cells sums the normalised channels (consecutive threads read
// consecutive cells: coalesced); one block per image then finds the map's
// maximum and quantises it in the same kernel. Connected components run on
// the CPU over the downloaded level map (r2cnn_level_boxes).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../r2cnn_checks.h"

namespace detaccel {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ T finite_or_zero(T v) {
  return isfinite(v) ? v : T(0);
}

template <typename T>
__device__ T block_max(T value, T* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      shared[threadIdx.x] = max(shared[threadIdx.x], shared[threadIdx.x + stride]);
    }
    __syncthreads();
  }
  const T result = shared[0];
  __syncthreads();
  return result;
}

template <typename T>
__global__ void channel_weight_kernel(const T* __restrict__ x, int64_t cells, T* __restrict__ weight) {
  __shared__ T shared[kThreads];
  const T* plane = x + blockIdx.x * cells;
  T local = T(0);
  for (int64_t i = threadIdx.x; i < cells; i += blockDim.x) {
    local = max(local, finite_or_zero(plane[i]));
  }
  const T maximum = block_max(local, shared);
  if (threadIdx.x == 0) {
    weight[blockIdx.x] = maximum > 0 ? T(1) / maximum : T(0);
  }
}

template <typename T>
__global__ void integrate_kernel(const T* __restrict__ x, const T* __restrict__ weight, int64_t images,
                                 int64_t channels, int64_t cells, T* __restrict__ integrated) {
  const int64_t total = images * cells;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t image = i / cells, cell = i % cells;
    const T* base = x + image * channels * cells + cell;
    const T* wt = weight + image * channels;
    T sum = T(0);
    for (int64_t c = 0; c < channels; ++c) {
      sum += finite_or_zero(base[c * cells]) * wt[c];
    }
    integrated[i] = sum;
  }
}

template <typename T>
__global__ void quantize_kernel(const T* __restrict__ integrated, int64_t cells, int num_levels,
                                int* __restrict__ levels) {
  __shared__ T shared[kThreads];
  const T* map = integrated + blockIdx.x * cells;
  T local = -INFINITY;
  for (int64_t i = threadIdx.x; i < cells; i += blockDim.x) {
    local = max(local, map[i]);
  }
  const T maximum = block_max(local, shared);
  for (int64_t i = threadIdx.x; i < cells; i += blockDim.x) {
    levels[blockIdx.x * cells + i] = quantize_level<T>(map[i], maximum, num_levels);
  }
}

std::tuple<at::Tensor, at::Tensor> r2cnn_feature_levels_cuda(const at::Tensor& features, int64_t num_levels) {
  check_r2cnn_features(features, num_levels);
  TORCH_CHECK(features.is_cuda(), "features: expected a CUDA tensor");
  c10::cuda::CUDAGuard guard(features.device());
  const int64_t n = features.size(0), c = features.size(1), h = features.size(2), w = features.size(3);
  const int64_t cells = h * w;
  // Half and bfloat16 maps are integrated in float32.
  auto [x, integrated, levels] = make_r2cnn_buffers(features);
  if (integrated.numel() == 0) {
    return {integrated, levels};
  }
  at::Tensor weight = at::zeros({n, c}, x.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "r2cnn_feature_levels (CUDA)", [&] {
    if (c > 0) {
      channel_weight_kernel<scalar_t><<<static_cast<unsigned>(n * c), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), cells, weight.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const int64_t blocks = std::min<int64_t>((n * cells + kThreads - 1) / kThreads, int64_t{1} << 16);
    integrate_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), n, c, cells,
        integrated.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    quantize_kernel<scalar_t><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        integrated.const_data_ptr<scalar_t>(), cells, static_cast<int>(num_levels), levels.mutable_data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {integrated, levels};
}

}  // namespace

TORCH_LIBRARY_IMPL(detaccel, CUDA, m) {
  m.impl("r2cnn_feature_levels", &r2cnn_feature_levels_cuda);
}

}  // namespace detaccel
