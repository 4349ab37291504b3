// Operator entry points of roi_pool and spp_pool, written once for every
// backend. Both operators are pyramids of max-pooling grids (roi_pool has a
// single level), so each backend provides just the two pyramid kernels
// below and these adapters give them the operators' signatures.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "pooling_checks.h"

namespace detaccel {

// Forward: returns (output [K, C * bins], argmax [K, C * bins] int32, or an
// empty argmax when with_argmax is false). For each level the block
// [C, bins_h, bins_w] follows the previous level's block.
using PyramidForward = std::tuple<at::Tensor, at::Tensor> (*)(const at::Tensor& input, const at::Tensor& rois,
                                                              double spatial_scale, const PyramidLayout& layout,
                                                              bool with_argmax);
// Backward: scatters grad [K, C * bins] to the argmax of each output into a
// zero-initialised [batch_size, C, H, W] gradient.
using PyramidBackward = at::Tensor (*)(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                       const PyramidLayout& layout, int64_t batch_size, int64_t channels,
                                       int64_t height, int64_t width);

// [K, ...] -> contiguous [K, C * bins] (sizes were checked by check_backward_inputs).
inline at::Tensor as_rows(const at::Tensor& tensor, int64_t num_rois) {
  return tensor.reshape({num_rois, num_rois == 0 ? 0 : tensor.numel() / num_rois}).contiguous();
}

template <PyramidForward forward>
std::tuple<at::Tensor, at::Tensor> roi_pool_forward(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                                    int64_t pooled_height, int64_t pooled_width, bool with_argmax) {
  check_pool_inputs(input, rois);
  auto layout = make_layout({{pooled_height, pooled_width}});
  auto [output, argmax] = forward(input, rois, spatial_scale, layout, with_argmax);
  const int64_t k = rois.size(0), c = input.size(1);
  output = output.view({k, c, pooled_height, pooled_width});
  return {output, with_argmax ? argmax.view({k, c, pooled_height, pooled_width}) : argmax};
}

template <PyramidBackward backward>
at::Tensor roi_pool_backward(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax, int64_t pooled_height,
                             int64_t pooled_width, int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  auto layout = make_layout({{pooled_height, pooled_width}});
  check_backward_inputs(grad, rois, argmax, batch_size, channels, height, width, pooled_height * pooled_width);
  return backward(as_rows(grad, rois.size(0)), rois, as_rows(argmax, rois.size(0)), layout, batch_size, channels, height,
                  width);
}

template <PyramidForward forward>
std::tuple<at::Tensor, at::Tensor> spp_pool_forward(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                                    at::IntArrayRef levels, bool with_argmax) {
  check_pool_inputs(input, rois);
  return forward(input, rois, spatial_scale, make_layout(square_levels(levels)), with_argmax);
}

template <PyramidBackward backward>
at::Tensor spp_pool_backward(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax, at::IntArrayRef levels,
                             int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  auto layout = make_layout(square_levels(levels));
  check_backward_inputs(grad, rois, argmax, batch_size, channels, height, width, layout.bin_offset[layout.num_levels]);
  return backward(as_rows(grad, rois.size(0)), rois, as_rows(argmax, rois.size(0)), layout, batch_size, channels, height,
                  width);
}

}  // namespace detaccel
