// Bin geometry of Fast R-CNN RoI max pooling, shared by the CPU and CUDA
// kernels of roi_pool and spp_pool.
//
// The arithmetic follows torchvision.ops.roi_pool exactly (Caffe semantics):
// corners are scaled and rounded half away from zero, the RoI extent is
// max(end - start + 1, 1), bin p spans [floor(p * size / n), ceil((p + 1) * size / n))
// offset by the start and clipped to the map. `G` is the type the geometry is
// computed in: the input's own type for float and double (so that results
// are bit-identical to torchvision), float for half and bfloat16.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DETACCEL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DETACCEL_HOST_DEVICE inline
#endif

namespace detaccel {

// The largest number of pyramid levels one spp_pool call accepts.
constexpr int kMaxLevels = 8;

// Pooled grid sizes of every level of a pyramid (roi_pool is a one-level
// pyramid). Passed by value to CUDA kernels.
struct PyramidLayout {
  int num_levels;
  int bins_h[kMaxLevels];
  int bins_w[kMaxLevels];
  int bin_offset[kMaxLevels + 1];  // first bin of each level; [num_levels] = total
};

// The window of one RoI on the feature map, before clipping.
struct RoiWindow {
  int start_h;
  int start_w;
  int height;
  int width;
};

// Scaled corners beyond this magnitude are clamped before the integer
// conversion, so that enormous or infinite coordinates cannot overflow `int`.
// A window this large is clipped to the map anyway.
constexpr double kMaxScaledCoordinate = 1 << 28;

template <typename G>
DETACCEL_HOST_DEVICE int round_coordinate(G value) {
  G limit = static_cast<G>(kMaxScaledCoordinate);
  // NaN compares false everywhere and lands on 0; the Python wrapper rejects it earlier.
  G clamped = value > limit ? limit : (value < -limit ? -limit : value);
  if (!(clamped == clamped)) {
    clamped = static_cast<G>(0);
  }
  return static_cast<int>(::round(clamped));
}

template <typename G>
DETACCEL_HOST_DEVICE RoiWindow roi_window(G x1, G y1, G x2, G y2, G spatial_scale) {
  RoiWindow window;
  window.start_w = round_coordinate<G>(x1 * spatial_scale);
  window.start_h = round_coordinate<G>(y1 * spatial_scale);
  int end_w = round_coordinate<G>(x2 * spatial_scale);
  int end_h = round_coordinate<G>(y2 * spatial_scale);
  // Malformed RoIs (end before start) are forced to one cell.
  window.width = end_w - window.start_w + 1 > 1 ? end_w - window.start_w + 1 : 1;
  window.height = end_h - window.start_h + 1 > 1 ? end_h - window.start_h + 1 : 1;
  return window;
}

DETACCEL_HOST_DEVICE int clip_index(int value, int size) {
  return value < 0 ? 0 : (value > size ? size : value);
}

// Half-open range [begin, end) of bin `index` of `num_bins` along one axis of
// length `extent` that starts at `start`, clipped to [0, size].
template <typename G>
DETACCEL_HOST_DEVICE void bin_range(
    int index, int num_bins, int start, int extent, int size, int* begin, int* end) {
  G bin_size = static_cast<G>(extent) / static_cast<G>(num_bins);
  int lo = static_cast<int>(::floor(static_cast<G>(index) * bin_size));
  int hi = static_cast<int>(::ceil(static_cast<G>(index + 1) * bin_size));
  *begin = clip_index(lo + start, size);
  *end = clip_index(hi + start, size);
}

// Maps a flat bin number of a pyramid to its level.
DETACCEL_HOST_DEVICE int level_of_bin(const PyramidLayout& layout, int bin) {
  int level = 0;
  while (level + 1 < layout.num_levels && bin >= layout.bin_offset[level + 1]) {
    ++level;
  }
  return level;
}

}  // namespace detaccel
