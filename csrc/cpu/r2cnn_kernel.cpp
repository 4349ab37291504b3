// CPU kernels of the R²-CNN RoI generator.
//
// r2cnn_feature_levels: (1) every channel is divided by its own maximum
// (channels whose maximum is not positive are skipped), (2) the channels are
// summed into one integrated map per image, (3) the map is quantised into
// levels. Channel maxima run in parallel over (image, channel) planes; the sum
// runs in parallel over (image, block of cells) with the channel loop outside
// the contiguous cell loop, so the inner loop is a vectorised multiply-add.
//
// r2cnn_level_boxes: per image (in parallel), each level present gives one box
// around all of its set's cells and then the boxes of the set's groups. The set
// of level l is the cells of level l, or of level >= l (superlevel sets). The
// groups are either 8-connected components, listed largest first (labelled with
// an explicit-stack flood fill per level; for superlevel sets, by union-find over
// all levels at once, as the sets are nested), or the original layer's greedy groups:
// in raster order, a box grows from the first unassigned cell and absorbs, in
// one pass over the later unassigned cells, every cell within one cell of the
// box (listed in the order they were grown).
// Non-finite feature values count as 0.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "../r2cnn_checks.h"

namespace detaccel {
namespace {

constexpr int64_t kCellBlock = 4096;

template <typename scalar_t>
inline scalar_t finite_or_zero(scalar_t v) {
  return std::isfinite(v) ? v : scalar_t(0);
}

std::tuple<at::Tensor, at::Tensor> r2cnn_feature_levels_cpu(const at::Tensor& features, int64_t num_levels) {
  check_r2cnn_features(features, num_levels);
  TORCH_CHECK(features.device().is_cpu(), "features: expected a CPU tensor");
  const int64_t n = features.size(0), c = features.size(1), h = features.size(2), w = features.size(3);
  const int64_t cells = h * w;
  auto [x, integrated, levels] = make_r2cnn_buffers(features);
  if (integrated.numel() == 0) {
    return {integrated, levels};
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "r2cnn_feature_levels (CPU)", [&] {
    const scalar_t* data = x.const_data_ptr<scalar_t>();
    std::vector<scalar_t> weight(n * c, scalar_t(0));
    at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        const scalar_t* p = data + plane * cells;
        scalar_t maximum = scalar_t(0);
        for (int64_t i = 0; i < cells; ++i) {
          maximum = std::max(maximum, finite_or_zero(p[i]));
        }
        weight[plane] = maximum > 0 ? scalar_t(1) / maximum : scalar_t(0);
      }
    });
    scalar_t* out = integrated.mutable_data_ptr<scalar_t>();
    const int64_t blocks = (cells + kCellBlock - 1) / kCellBlock;
    at::parallel_for(0, n * blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t image = task / blocks, first = (task % blocks) * kCellBlock;
        const int64_t count = std::min(kCellBlock, cells - first);
        scalar_t* acc = out + image * cells + first;
        for (int64_t ch = 0; ch < c; ++ch) {
          const scalar_t wt = weight[image * c + ch];
          if (wt == 0) {
            continue;
          }
          const scalar_t* p = data + (image * c + ch) * cells + first;
          for (int64_t i = 0; i < count; ++i) {
            acc[i] += finite_or_zero(p[i]) * wt;
          }
        }
      }
    });
    int* level = levels.mutable_data_ptr<int>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t image = begin; image < end; ++image) {
        const scalar_t* v = out + image * cells;
        const scalar_t maximum = *std::max_element(v, v + cells);
        for (int64_t i = 0; i < cells; ++i) {
          level[image * cells + i] = quantize_level<scalar_t>(v[i], maximum, static_cast<int>(num_levels));
        }
      }
    });
  });
  return {integrated, levels};
}

// Grouping of a level's set (the op's `grouping` argument).
enum Grouping : int64_t { kFloodGrouping = 0, kOriginalGrouping = 1 };

using Box = std::array<int64_t, 4>;

struct Component {
  int64_t size;
  int64_t first;  // first cell in raster order: a deterministic tie-break
  std::array<int64_t, 4> box;
};

// Flood fill of one level's set (cells of level l, or of level >= l when superlevel):
// its 8-connected components, largest first (ties: first cell in raster order).
// `stamp` marks visited cells with `mark`, so one buffer serves every level.
std::vector<Box> flood_groups(const int* level, int64_t h, int64_t w, int l, bool superlevel,
                              const std::vector<int64_t>& cells, std::vector<int32_t>& stamp, int32_t mark,
                              std::vector<int64_t>& stack) {
  auto in_set = [&](int64_t cell) { return superlevel ? level[cell] >= l : level[cell] == l; };
  std::vector<Component> components;
  for (const int64_t start : cells) {
    if (stamp[start] == mark) {
      continue;
    }
    Component comp{0, start, {w, h, -1, -1}};
    stamp[start] = mark;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t cell = stack.back();
      stack.pop_back();
      const int64_t y = cell / w, x = cell % w;
      ++comp.size;
      comp.box = {std::min(comp.box[0], x), std::min(comp.box[1], y), std::max(comp.box[2], x), std::max(comp.box[3], y)};
      for (int64_t ny = std::max<int64_t>(y - 1, 0); ny <= std::min(y + 1, h - 1); ++ny) {
        for (int64_t nx = std::max<int64_t>(x - 1, 0); nx <= std::min(x + 1, w - 1); ++nx) {
          const int64_t next = ny * w + nx;
          if (stamp[next] != mark && in_set(next)) {
            stamp[next] = mark;
            stack.push_back(next);
          }
        }
      }
    }
    components.push_back(comp);
  }
  std::stable_sort(components.begin(), components.end(), [](const Component& a, const Component& b) {
    return a.size != b.size ? a.size > b.size : a.first < b.first;
  });
  std::vector<Box> boxes;
  boxes.reserve(components.size());
  for (const auto& comp : components) {
    boxes.push_back(comp.box);
  }
  return boxes;
}

// Greedy groups of the original layer over one level's set, `cells` in raster
// order: the first unassigned cell starts a box; one pass over the later
// unassigned cells, in raster order, absorbs every cell inside the box or within
// one cell of it (x1 - 1 <= x <= x2 + 1 and y1 - 1 <= y <= y2 + 1), growing the
// box to cover it; cells passed before the box grew near them stay unassigned.
// At most `max_groups` groups, in the order they were grown.
std::vector<Box> original_groups(std::vector<int64_t> cells, int64_t w, int64_t max_groups) {
  std::vector<Box> boxes;
  while (!cells.empty() && static_cast<int64_t>(boxes.size()) < max_groups) {
    const int64_t seed_y = cells[0] / w, seed_x = cells[0] % w;
    Box box{seed_x, seed_y, seed_x, seed_y};
    size_t kept = 0;
    for (size_t i = 1; i < cells.size(); ++i) {
      const int64_t y = cells[i] / w, x = cells[i] % w;
      if (x >= box[0] - 1 && x <= box[2] + 1 && y >= box[1] - 1 && y <= box[3] + 1) {
        box = {std::min(box[0], x), std::min(box[1], y), std::max(box[2], x), std::max(box[3], y)};
      } else {
        cells[kept++] = cells[i];
      }
    }
    cells.resize(kept);
    boxes.push_back(box);
  }
  return boxes;
}

// Superlevel sets with 8-connected components, all levels in one pass: the sets are nested, so
// adding the cells from the top level down, the components of the set of level >= l are the
// union-find trees once level l's cells are in. Each tree keeps its size, its first cell in raster
// order and its box; a level's groups are its trees, largest first (ties: first cell), as the flood
// fill lists them, at O(cells) for all levels instead of O(cells x levels).
struct Tree {
  int64_t size;
  int64_t first;
  Box box;
};

std::vector<Box> superlevel_component_boxes(const int* level, int64_t h, int64_t w, int num_levels,
                                            int64_t max_per_level, const std::vector<int64_t>& by_level,
                                            const std::vector<int64_t>& offset) {
  const int64_t cells = h * w;
  std::vector<int64_t> parent(cells, -1);  // -1: not in the set yet
  std::vector<Tree> tree(cells);
  auto find = [&](int64_t c) {
    while (parent[c] != c) {
      parent[c] = parent[parent[c]];  // path halving
      c = parent[c];
    }
    return c;
  };
  // Joins root `a`'s tree and `b`'s; returns the joined tree's root.
  auto unite = [&](int64_t a, int64_t b) {
    b = find(b);
    if (a == b) {
      return a;
    }
    if (tree[a].size < tree[b].size) {
      std::swap(a, b);
    }
    parent[b] = a;
    Tree& into = tree[a];
    const Tree& from = tree[b];
    into.size += from.size;
    into.first = std::min(into.first, from.first);
    into.box = {std::min(into.box[0], from.box[0]), std::min(into.box[1], from.box[1]),
                std::max(into.box[2], from.box[2]), std::max(into.box[3], from.box[3])};
    return a;
  };
  std::vector<std::vector<Box>> per_level(num_levels);
  std::vector<int64_t> roots;
  for (int l = num_levels - 1; l >= 0; --l) {
    for (int64_t k = offset[l]; k < offset[l + 1]; ++k) {
      const int64_t cell = by_level[k];
      const int64_t y = cell / w, x = cell - y * w;
      parent[cell] = cell;
      tree[cell] = {1, cell, {x, y, x, y}};
      roots.push_back(cell);
      // The neighbours already in the set; a cell only joins trees, so it stays its own root until then.
      int64_t root = cell;
      for (int64_t ny = std::max<int64_t>(y - 1, 0); ny <= std::min(y + 1, h - 1); ++ny) {
        for (int64_t nx = std::max<int64_t>(x - 1, 0); nx <= std::min(x + 1, w - 1); ++nx) {
          const int64_t next = ny * w + nx;
          if (parent[next] != -1 && next != cell) {
            root = unite(root, next);
          }
        }
      }
    }
    if (offset[l] == offset[l + 1]) {
      continue;  // no cell of its own: the level is skipped, as in the flood fill
    }
    roots.erase(std::remove_if(roots.begin(), roots.end(), [&](int64_t r) { return parent[r] != r; }),
                roots.end());
    std::sort(roots.begin(), roots.end(), [&](int64_t a, int64_t b) {
      return tree[a].size != tree[b].size ? tree[a].size > tree[b].size : tree[a].first < tree[b].first;
    });
    Box level_box{w, h, -1, -1};
    for (const int64_t r : roots) {
      const Box& b = tree[r].box;
      level_box = {std::min(level_box[0], b[0]), std::min(level_box[1], b[1]), std::max(level_box[2], b[2]),
                   std::max(level_box[3], b[3])};
    }
    std::vector<Box>& boxes = per_level[l];
    boxes.push_back(level_box);
    const size_t taken = std::min(roots.size(), static_cast<size_t>(max_per_level - 1));
    for (size_t i = 0; i < taken; ++i) {
      boxes.push_back(tree[roots[i]].box);
    }
  }
  std::vector<Box> boxes;
  for (const auto& level_boxes : per_level) {
    boxes.insert(boxes.end(), level_boxes.begin(), level_boxes.end());
  }
  return boxes;
}

// Any grouping, equal or superlevel sets: one pass per level present (a level
// with no cell of its own would repeat the next level's boxes and is skipped).
// The cells of each level are bucketed once, in raster order; a superlevel set is
// gathered by a scan of the map. Original grouping costs O(cells x groups) per level.
std::vector<Box> image_level_set_boxes(const int* level, int64_t h, int64_t w, int num_levels,
                                       int64_t max_per_level, int64_t grouping, bool superlevel) {
  const int64_t cells = h * w;
  std::vector<int64_t> offset(num_levels + 1, 0);
  for (int64_t i = 0; i < cells; ++i) {
    ++offset[level[i] + 1];
  }
  for (int l = 0; l < num_levels; ++l) {
    offset[l + 1] += offset[l];
  }
  std::vector<int64_t> by_level(cells);
  {
    std::vector<int64_t> fill(offset.begin(), offset.end() - 1);
    for (int64_t i = 0; i < cells; ++i) {
      by_level[fill[level[i]]++] = i;
    }
  }
  if (superlevel && grouping == kFloodGrouping) {
    return superlevel_component_boxes(level, h, w, num_levels, max_per_level, by_level, offset);
  }
  std::vector<int32_t> stamp(grouping == kFloodGrouping ? cells : 0, 0);
  std::vector<int64_t> stack, members;
  std::vector<Box> boxes;
  for (int l = 0; l < num_levels; ++l) {
    if (offset[l] == offset[l + 1]) {
      continue;  // no cell at this level
    }
    if (superlevel) {
      members.clear();
      for (int64_t i = 0; i < cells; ++i) {
        if (level[i] >= l) {
          members.push_back(i);
        }
      }
    } else {
      members.assign(by_level.begin() + offset[l], by_level.begin() + offset[l + 1]);
    }
    Box level_box{w, h, -1, -1};
    for (const int64_t i : members) {
      const int64_t y = i / w, x = i % w;
      level_box = {std::min(level_box[0], x), std::min(level_box[1], y), std::max(level_box[2], x),
                   std::max(level_box[3], y)};
    }
    boxes.push_back(level_box);
    const std::vector<Box> groups = grouping == kFloodGrouping
                                        ? flood_groups(level, h, w, l, superlevel, members, stamp, l + 1, stack)
                                        : original_groups(members, w, max_per_level - 1);
    const size_t taken = std::min(groups.size(), static_cast<size_t>(max_per_level - 1));
    boxes.insert(boxes.end(), groups.begin(), groups.begin() + taken);
  }
  return boxes;
}

std::tuple<at::Tensor, at::Tensor> r2cnn_level_boxes_cpu(const at::Tensor& levels, int64_t num_levels,
                                                        int64_t max_boxes_per_level, int64_t grouping,
                                                        bool superlevel) {
  TORCH_CHECK(levels.dim() == 3, "levels: expected a 3-D tensor [N, H, W], got ", levels.dim(), " dims");
  TORCH_CHECK(levels.scalar_type() == at::kInt, "levels: expected int32, got ", levels.scalar_type());
  TORCH_CHECK(levels.device().is_cpu(), "levels: expected a CPU tensor");
  TORCH_CHECK(num_levels >= 1 && num_levels <= kMaxR2cnnLevels, "num_levels: expected 1 to ", kMaxR2cnnLevels);
  TORCH_CHECK(max_boxes_per_level >= 1, "max_boxes_per_level: expected a positive number, got ", max_boxes_per_level);
  TORCH_CHECK(grouping == kFloodGrouping || grouping == kOriginalGrouping,
              "grouping: expected 0 (flood fill) or 1 (original), got ", grouping);
  const at::Tensor lv = levels.contiguous();
  const int64_t n = lv.size(0), h = lv.size(1), w = lv.size(2);
  const int* data = lv.const_data_ptr<int>();
  // Out-of-range levels would index past the per-level tables.
  const bool in_range = std::all_of(data, data + lv.numel(), [&](int v) { return v >= 0 && v < num_levels; });
  TORCH_CHECK(in_range, "levels: values must lie in [0, num_levels)");
  std::vector<std::vector<std::array<int64_t, 4>>> per_image(n);
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int* image = data + i * h * w;
      per_image[i] = image_level_set_boxes(image, h, w, static_cast<int>(num_levels), max_boxes_per_level,
                                           grouping, superlevel);
    }
  });
  int64_t total = 0;
  for (const auto& b : per_image) {
    total += static_cast<int64_t>(b.size());
  }
  at::Tensor boxes = at::empty({total, 4}, lv.options().dtype(at::kLong));
  at::Tensor image_index = at::empty({total}, lv.options().dtype(at::kLong));
  int64_t* box_data = boxes.mutable_data_ptr<int64_t>();
  int64_t* index_data = image_index.mutable_data_ptr<int64_t>();
  int64_t row = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& b : per_image[i]) {
      std::copy(b.begin(), b.end(), box_data + 4 * row);
      index_data[row++] = i;
    }
  }
  return {boxes, image_index};
}

// Contrast score of each pixel box on one integrated map (r2cnn_contrast_scores): the box is
// mapped to cells ((p - offset) / stride), the cells inside it and those of the box grown by `ring`
// times its size on every side (both rounded half up and clipped to the map, never inverted) are summed
// with a summed-area table, and the score is the inside mean minus the mean of the ring between the
// two (0 when the ring is empty). The table is accumulated down the rows, then along them, in double,
// the order of numpy's cumsum(0).cumsum(1), so the scores equal the numpy reference's.
at::Tensor r2cnn_contrast_scores_cpu(const at::Tensor& integrated, const at::Tensor& boxes, double stride_x,
                                     double offset_x, double stride_y, double offset_y, double ring) {
  TORCH_CHECK(integrated.dim() == 2, "integrated: expected a 2-D map [H, W], got ", integrated.dim(), " dims");
  TORCH_CHECK(integrated.device().is_cpu() && boxes.device().is_cpu(), "integrated, boxes: expected CPU tensors");
  TORCH_CHECK(at::isFloatingType(integrated.scalar_type()), "integrated: expected a floating-point tensor");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "boxes: expected [K, 4]");
  TORCH_CHECK(std::isfinite(stride_x) && std::isfinite(stride_y) && stride_x > 0 && stride_y > 0,
              "stride: expected positive finite values");
  TORCH_CHECK(std::isfinite(offset_x) && std::isfinite(offset_y), "offset: expected finite values");
  TORCH_CHECK(std::isfinite(ring) && ring >= 0, "ring: expected a non-negative finite value");
  const int64_t h = integrated.size(0), w = integrated.size(1), k = boxes.size(0);
  at::Tensor scores = at::empty({k}, boxes.options().dtype(at::kFloat));
  if (k == 0) {
    return scores;
  }
  TORCH_CHECK(h > 0 && w > 0, "integrated: the map is empty");
  const at::Tensor map = integrated.to(at::kDouble).contiguous();
  const at::Tensor b = boxes.to(at::kDouble).contiguous();
  const double* box = b.const_data_ptr<double>();
  TORCH_CHECK(std::all_of(box, box + 4 * k, [](double v) { return std::isfinite(v); }),
              "boxes: expected finite coordinates");
  std::vector<double> table((h + 1) * (w + 1), 0.0);  // table[(y + 1) * (w + 1) + x + 1]: sum over [0, y] x [0, x]
  const double* value = map.const_data_ptr<double>();
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      table[(y + 1) * (w + 1) + x + 1] = table[y * (w + 1) + x + 1] + value[y * w + x];
    }
  }
  for (int64_t y = 1; y <= h; ++y) {
    for (int64_t x = 1; x <= w; ++x) {
      table[y * (w + 1) + x] += table[y * (w + 1) + x - 1];
    }
  }
  // Rounded half up and clipped to [0, size - 1]: an index of the map whatever the coordinate.
  auto cell = [](double v, int64_t size) {
    return static_cast<int64_t>(std::min(std::max(std::floor(v + 0.5), 0.0), static_cast<double>(size - 1)));
  };
  struct Rect {
    double sum;
    int64_t area;
  };
  auto rect = [&](double x1, double y1, double x2, double y2) {
    const int64_t cx1 = cell(x1, w), cy1 = cell(y1, h);
    const int64_t cx2 = std::max(cell(x2, w), cx1), cy2 = std::max(cell(y2, h), cy1);
    const int64_t row = w + 1;
    const double sum = table[(cy2 + 1) * row + cx2 + 1] - table[cy1 * row + cx2 + 1] -
                       table[(cy2 + 1) * row + cx1] + table[cy1 * row + cx1];
    return Rect{sum, (cx2 - cx1 + 1) * (cy2 - cy1 + 1)};
  };
  float* out = scores.mutable_data_ptr<float>();
  for (int64_t i = 0; i < k; ++i) {
    const double x1 = (box[4 * i] - offset_x) / stride_x, y1 = (box[4 * i + 1] - offset_y) / stride_y;
    const double x2 = (box[4 * i + 2] - offset_x) / stride_x, y2 = (box[4 * i + 3] - offset_y) / stride_y;
    const double grow_x = ring * std::max(x2 - x1 + 1, 1.0), grow_y = ring * std::max(y2 - y1 + 1, 1.0);
    const Rect inner = rect(x1, y1, x2, y2);
    const Rect outer = rect(x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y);
    const int64_t ring_area = outer.area - inner.area;
    const double ring_mean = ring_area > 0 ? (outer.sum - inner.sum) / static_cast<double>(ring_area) : 0.0;
    out[i] = static_cast<float>(inner.sum / static_cast<double>(inner.area) - ring_mean);
  }
  return scores;
}

}  // namespace

TORCH_LIBRARY_IMPL(detaccel, CPU, m) {
  m.impl("r2cnn_feature_levels", &r2cnn_feature_levels_cpu);
  m.impl("r2cnn_level_boxes", &r2cnn_level_boxes_cpu);
  m.impl("r2cnn_contrast_scores", &r2cnn_contrast_scores_cpu);
}

}  // namespace detaccel
