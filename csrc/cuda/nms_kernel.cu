// CUDA NMS: boxes sorted by score, one 64x64 tile of IoU tests per block
// producing a suppression bitmask (bit j of word (i, block) set when box i
// suppresses box j), then one greedy pass over the mask on the host. With
// class ids, boxes of different classes never suppress each other, so
// batched NMS needs no coordinate offsets.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "../nms_ops.h"

namespace detaccel {
namespace {

constexpr int kBoxesPerWord = 64;

template <typename acc_t>
__device__ __forceinline__ bool overlaps(const acc_t* a, const acc_t* b, acc_t threshold) {
  const acc_t w = max(acc_t(0), min(a[2], b[2]) - max(a[0], b[0]));
  const acc_t h = max(acc_t(0), min(a[3], b[3]) - max(a[1], b[1]));
  const acc_t inter = w * h;
  const acc_t area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const acc_t area_b = (b[2] - b[0]) * (b[3] - b[1]);
  return inter / (area_a + area_b - inter) > threshold;
}

template <typename scalar_t>
__global__ void nms_mask_kernel(int n, at::opmath_type<scalar_t> iou_threshold, const scalar_t* __restrict__ boxes,
                                const int64_t* __restrict__ labels, unsigned long long* __restrict__ mask) {
  using acc_t = at::opmath_type<scalar_t>;
  const int row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) {
    return;
  }
  const int words = (n + kBoxesPerWord - 1) / kBoxesPerWord;
  const int row_size = min(n - row_block * kBoxesPerWord, kBoxesPerWord);
  const int col_size = min(n - col_block * kBoxesPerWord, kBoxesPerWord);
  __shared__ acc_t col_boxes[kBoxesPerWord * 4];
  __shared__ int64_t col_labels[kBoxesPerWord];
  if (threadIdx.x < col_size) {
    const int j = col_block * kBoxesPerWord + threadIdx.x;
    for (int d = 0; d < 4; ++d) {
      col_boxes[threadIdx.x * 4 + d] = static_cast<acc_t>(boxes[j * 4 + d]);
    }
    col_labels[threadIdx.x] = labels != nullptr ? labels[j] : 0;
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int i = row_block * kBoxesPerWord + threadIdx.x;
    acc_t box[4];
    for (int d = 0; d < 4; ++d) {
      box[d] = static_cast<acc_t>(boxes[i * 4 + d]);
    }
    const int64_t label = labels != nullptr ? labels[i] : 0;
    unsigned long long bits = 0;
    for (int j = row_block == col_block ? threadIdx.x + 1 : 0; j < col_size; ++j) {
      if (col_labels[j] == label && overlaps<acc_t>(box, col_boxes + j * 4, iou_threshold)) {
        bits |= 1ULL << j;
      }
    }
    mask[static_cast<int64_t>(i) * words + col_block] = bits;
  }
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                    double iou_threshold) {
  TORCH_CHECK(boxes.is_cuda(), "boxes: expected a CUDA tensor");
  c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  TORCH_CHECK(n < (int64_t{1} << 31) / kBoxesPerWord, "boxes: too many boxes for one NMS call");
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted_boxes = boxes.index_select(0, order).contiguous();
  const at::Tensor sorted_labels = idxs.has_value() ? idxs->index_select(0, order).contiguous() : at::Tensor();
  const int words = static_cast<int>((n + kBoxesPerWord - 1) / kBoxesPerWord);
  at::Tensor mask = at::empty({n * words}, boxes.options().dtype(at::kLong));
  const dim3 grid(words, words);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, boxes.scalar_type(), "nms (CUDA)", [&] {
    nms_mask_kernel<scalar_t><<<grid, kBoxesPerWord, 0, stream>>>(
        static_cast<int>(n), threshold_as<at::opmath_type<scalar_t>>(iou_threshold), sorted_boxes.const_data_ptr<scalar_t>(),
        sorted_labels.defined() ? sorted_labels.const_data_ptr<int64_t>() : nullptr,
        reinterpret_cast<unsigned long long*>(mask.mutable_data_ptr<int64_t>()));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor mask_cpu = mask.cpu();
  const auto* mask_data = reinterpret_cast<const unsigned long long*>(mask_cpu.const_data_ptr<int64_t>());
  std::vector<unsigned long long> removed(words, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const int word = static_cast<int>(i / kBoxesPerWord), bit = static_cast<int>(i % kBoxesPerWord);
    if (removed[word] & (1ULL << bit)) {
      continue;
    }
    keep.push_back(i);
    const unsigned long long* row = mask_data + i * words;
    for (int w = word; w < words; ++w) {
      removed[w] |= row[w];
    }
  }
  const at::Tensor keep_sorted = at::tensor(keep, at::TensorOptions().dtype(at::kLong)).to(boxes.device(), true);
  return order.index_select(0, keep_sorted);
}

}  // namespace

TORCH_LIBRARY_IMPL(detaccel, CUDA, m) {
  m.impl("nms", &nms<nms_cuda>);
  m.impl("batched_nms", &batched_nms<nms_cuda>);
}

}  // namespace detaccel
