// Argument checks of the R²-CNN operators, shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

namespace detaccel {

constexpr int64_t kMaxR2cnnLevels = 1 << 16;

inline void check_r2cnn_features(const at::Tensor& features, int64_t num_levels) {
  TORCH_CHECK(features.dim() == 4, "features: expected a 4-D tensor [N, C, H, W], got ", features.dim(), " dims");
  TORCH_CHECK(at::isFloatingType(features.scalar_type()), "features: expected a floating-point tensor, got ",
              features.scalar_type());
  TORCH_CHECK(features.numel() < (int64_t{1} << 31), "features: more than 2^31 elements is not supported");
  TORCH_CHECK(num_levels >= 1 && num_levels <= kMaxR2cnnLevels, "num_levels: expected 1 to ", kMaxR2cnnLevels, ", got ",
              num_levels);
}

// The map (contiguous; float32 unless float64) and zeroed integrated map [N, H, W] and
// levels [N, H, W] int32 that both backends start from.
struct R2cnnBuffers {
  at::Tensor features;
  at::Tensor integrated;
  at::Tensor levels;
};

inline R2cnnBuffers make_r2cnn_buffers(const at::Tensor& features) {
  const at::Tensor x =
      features.scalar_type() == at::kDouble ? features.contiguous() : features.contiguous().to(at::kFloat);
  const int64_t n = features.size(0), h = features.size(2), w = features.size(3);
  return {x, at::zeros({n, h, w}, x.options()), at::zeros({n, h, w}, x.options().dtype(at::kInt))};
}

// Level of an integrated value: floor(L * value / (max + eps)), clamped to [0, L - 1].
template <typename T>
#if defined(__CUDACC__)
__host__ __device__
#endif
    inline int quantize_level(T value, T maximum, int num_levels) {
  const T eps = static_cast<T>(1e-12);
  const T scaled = static_cast<T>(num_levels) * value / (maximum + eps);
  if (!(scaled > 0)) {
    return 0;
  }
  return scaled >= static_cast<T>(num_levels - 1) ? num_levels - 1 : static_cast<int>(scaled);
}

}  // namespace detaccel
