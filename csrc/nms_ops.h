// Operator entry points of nms and batched_nms, written once for every
// backend: each backend provides one kernel that runs greedy NMS and, when
// class ids are given, only lets boxes of the same class suppress each other.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>

namespace detaccel {

using NmsKernel = at::Tensor (*)(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                                 double iou_threshold);

// The largest T not above `threshold`: for every T value x, (x > result) is
// exactly (double(x) > threshold), the comparison torchvision's CPU NMS makes.
template <typename T>
T threshold_as(double threshold) {
  T value = static_cast<T>(threshold);
  if (static_cast<double>(value) > threshold) {
    value = std::nextafter(value, -std::numeric_limits<T>::infinity());
  }
  return value;
}

inline void check_nms_inputs(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "boxes: expected shape [N, 4] (x1, y1, x2, y2), got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "scores: expected shape [", boxes.size(0), "], got ",
              scores.sizes());
  TORCH_CHECK(boxes.device() == scores.device(), "scores: expected device ", boxes.device(), ", got ", scores.device());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), "scores: expected dtype ", boxes.scalar_type(), ", got ",
              scores.scalar_type());
}

template <NmsKernel kernel>
at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_inputs(boxes, scores);
  return kernel(boxes, scores, std::nullopt, iou_threshold);
}

template <NmsKernel kernel>
at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs, double iou_threshold) {
  check_nms_inputs(boxes, scores);
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), "idxs: expected shape [", boxes.size(0), "], got ",
              idxs.sizes());
  TORCH_CHECK(idxs.device() == boxes.device(), "idxs: expected device ", boxes.device(), ", got ", idxs.device());
  TORCH_CHECK(!at::isFloatingType(idxs.scalar_type()) && idxs.scalar_type() != at::kBool,
              "idxs: expected an integer tensor, got ", idxs.scalar_type());
  return kernel(boxes, scores, idxs.to(at::kLong), iou_threshold);
}

}  // namespace detaccel
