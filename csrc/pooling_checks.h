// Argument checks shared by the CPU and CUDA pooling kernels. They run before
// any kernel launch; the Python wrappers check the same things (and the RoI
// values) earlier with friendlier messages, these keep direct calls of the
// registered operators safe.
#pragma once

#include <ATen/ATen.h>

#include <utility>
#include <vector>

#include "pool_geometry.h"

namespace detaccel {

inline void check_pool_inputs(const at::Tensor& input, const at::Tensor& rois) {
  TORCH_CHECK(input.dim() == 4, "input: expected a 4-D tensor [N, C, H, W], got ", input.dim(), " dims");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "rois: expected shape [K, 5] (batch_index, x1, y1, x2, y2), got ", rois.sizes());
  TORCH_CHECK(input.device() == rois.device(), "rois: expected device ", input.device(), ", got ", rois.device());
  TORCH_CHECK(input.scalar_type() == rois.scalar_type(), "rois: expected dtype ", input.scalar_type(), " (the input's), got ",
              rois.scalar_type());
  TORCH_CHECK(input.numel() < (int64_t{1} << 31) && input.size(2) * input.size(3) < (int64_t{1} << 31),
              "input: more than 2^31 elements is not supported");
}

inline PyramidLayout make_layout(const std::vector<std::pair<int64_t, int64_t>>& levels) {
  TORCH_CHECK(!levels.empty(), "levels: expected at least one pyramid level");
  TORCH_CHECK(static_cast<int>(levels.size()) <= kMaxLevels, "levels: at most ", kMaxLevels, " levels are supported, got ",
              levels.size());
  PyramidLayout layout{};
  layout.num_levels = static_cast<int>(levels.size());
  int64_t offset = 0;
  for (size_t i = 0; i < levels.size(); ++i) {
    TORCH_CHECK(levels[i].first > 0 && levels[i].second > 0, "output_size: every pooled size must be positive, got (",
                levels[i].first, ", ", levels[i].second, ")");
    TORCH_CHECK(levels[i].first <= 1024 && levels[i].second <= 1024, "output_size: pooled sizes above 1024 are not supported");
    layout.bins_h[i] = static_cast<int>(levels[i].first);
    layout.bins_w[i] = static_cast<int>(levels[i].second);
    layout.bin_offset[i] = static_cast<int>(offset);
    offset += levels[i].first * levels[i].second;
  }
  layout.bin_offset[levels.size()] = static_cast<int>(offset);
  return layout;
}

inline std::vector<std::pair<int64_t, int64_t>> square_levels(at::IntArrayRef levels) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t n : levels) {
    out.emplace_back(n, n);
  }
  return out;
}

inline void check_backward_inputs(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax, int64_t batch_size,
                                  int64_t channels, int64_t height, int64_t width, int64_t bins) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "rois: expected shape [K, 5], got ", rois.sizes());
  TORCH_CHECK(argmax.scalar_type() == at::kInt, "argmax: expected int32, got ", argmax.scalar_type());
  TORCH_CHECK(grad.device() == rois.device() && argmax.device() == rois.device(), "grad, rois and argmax must share one device");
  TORCH_CHECK(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0, "input sizes must be non-negative");
  TORCH_CHECK(grad.numel() == rois.size(0) * channels * bins, "grad: expected ", rois.size(0) * channels * bins,
              " elements, got ", grad.numel());
  TORCH_CHECK(argmax.numel() == grad.numel(), "argmax: expected as many elements as grad");
}

// Output shape [K, C * bins] of a pyramid, reshaped by the callers.
inline std::vector<int64_t> pyramid_output_shape(int64_t num_rois, int64_t channels, const PyramidLayout& layout) {
  return {num_rois, channels * layout.bin_offset[layout.num_levels]};
}

}  // namespace detaccel
