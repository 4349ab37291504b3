// CPU NMS. Boxes are gathered in score order (stable: equal scores keep their
// input order) into structure-of-arrays buffers, so the suppression test of one
// kept box against all later boxes is a branch-free loop over contiguous
// memory that the compiler vectorises; torchvision walks an index array with a
// branch per box. For batched NMS the boxes are grouped by class first (score
// order kept inside each group), so only boxes of one class are ever compared,
// and the kept boxes are returned in global score order.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "../nms_ops.h"

namespace detaccel {
namespace {

template <typename scalar_t>
void greedy_nms_range(const scalar_t* x1, const scalar_t* y1, const scalar_t* x2, const scalar_t* y2,
                      const scalar_t* area, int64_t begin, int64_t end, scalar_t threshold, int32_t* suppressed,
                      std::vector<int64_t>& kept_positions) {
  for (int64_t i = begin; i < end; ++i) {
    if (suppressed[i]) {
      continue;
    }
    kept_positions.push_back(i);
    const scalar_t ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
    for (int64_t j = i + 1; j < end; ++j) {
      const scalar_t w = std::max(scalar_t(0), std::min(ix2, x2[j]) - std::max(ix1, x1[j]));
      const scalar_t h = std::max(scalar_t(0), std::min(iy2, y2[j]) - std::max(iy1, y1[j]));
      const scalar_t inter = w * h;
      // Same expression as torchvision; a 0/0 IoU (two empty boxes) is NaN and suppresses nothing.
      suppressed[j] |= static_cast<int32_t>(inter / (iarea + area[j] - inter) > threshold);
    }
  }
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                   double iou_threshold) {
  TORCH_CHECK(boxes.device().is_cpu(), "boxes: expected a CPU tensor");
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  // order: positions sorted by score; when grouping by class, `rank` keeps
  // each box's place in the global score order.
  at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  at::Tensor rank = at::arange(n, order.options());
  std::vector<int64_t> group_bounds = {0, n};
  if (idxs.has_value()) {
    const at::Tensor by_class = std::get<1>(idxs->index_select(0, order).sort(/*stable=*/true, 0, false));
    order = order.index_select(0, by_class);
    rank = by_class;
    const at::Tensor labels = idxs->index_select(0, order).contiguous();
    const int64_t* label = labels.const_data_ptr<int64_t>();
    group_bounds = {0};
    for (int64_t i = 1; i < n; ++i) {
      if (label[i] != label[i - 1]) {
        group_bounds.push_back(i);
      }
    }
    group_bounds.push_back(n);
  }
  const at::Tensor sorted = boxes.index_select(0, order).t().contiguous();  // [4, n]
  std::vector<int32_t> suppressed(n, 0);
  std::vector<int64_t> kept;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms (CPU)", [&] {
    const scalar_t* x1 = sorted.const_data_ptr<scalar_t>();
    const scalar_t *y1 = x1 + n, *x2 = x1 + 2 * n, *y2 = x1 + 3 * n;
    std::vector<scalar_t> area(n);
    for (int64_t i = 0; i < n; ++i) {
      area[i] = (x2[i] - x1[i]) * (y2[i] - y1[i]);
    }
    for (size_t g = 0; g + 1 < group_bounds.size(); ++g) {
      greedy_nms_range<scalar_t>(x1, y1, x2, y2, area.data(), group_bounds[g], group_bounds[g + 1],
                                 threshold_as<scalar_t>(iou_threshold), suppressed.data(), kept);
    }
  });
  // Back to global score order, then to input indices.
  const int64_t* rank_data = rank.const_data_ptr<int64_t>();
  std::sort(kept.begin(), kept.end(), [&](int64_t a, int64_t b) { return rank_data[a] < rank_data[b]; });
  const at::Tensor positions = at::tensor(kept, order.options());
  return order.index_select(0, positions);
}

}  // namespace

TORCH_LIBRARY_IMPL(detaccel, CPU, m) {
  m.impl("nms", &nms<nms_cpu>);
  m.impl("batched_nms", &batched_nms<nms_cpu>);
}

}  // namespace detaccel
