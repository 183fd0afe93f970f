#include "tflite/sparse_tensor.h"

#include <cstring>

#include "core/error.h"

namespace outpost::tflite {
namespace {

[[noreturn]] void Bad(const ::tflite::Tensor& t, const std::string& what) {
  Fail(ErrorCode::kInvalidArgument,
       "tflite: sparse tensor '" + (t.name() ? t.name()->str() : std::string()) + "': " + what);
}

std::vector<int64_t> ReadIndexVector(const ::tflite::Tensor& t, ::tflite::SparseIndexVector type,
                                     const void* v) {
  std::vector<int64_t> out;
  if (!v) Bad(t, "a sparse dimension without its index arrays");
  switch (type) {
    case ::tflite::SparseIndexVector_Int32Vector: {
      const auto* values = static_cast<const ::tflite::Int32Vector*>(v)->values();
      if (values) out.assign(values->begin(), values->end());
      break;
    }
    case ::tflite::SparseIndexVector_Uint16Vector: {
      const auto* values = static_cast<const ::tflite::Uint16Vector*>(v)->values();
      if (values) out.assign(values->begin(), values->end());
      break;
    }
    case ::tflite::SparseIndexVector_Uint8Vector: {
      const auto* values = static_cast<const ::tflite::Uint8Vector*>(v)->values();
      if (values) out.assign(values->begin(), values->end());
      break;
    }
    default:
      Bad(t, "an index array of unknown type");
  }
  return out;
}

// Walks the levels of the compressed layout in traversal order, the way TFLite's format
// converter does, writing each stored value to its dense position.
struct Walker {
  const ::tflite::Tensor& t;
  std::span<const uint8_t> src;
  size_t element;
  const std::vector<int64_t>& dense_shape;
  std::vector<int64_t> traversal, block_map, block_size;
  std::vector<bool> dense;
  std::vector<int64_t> dense_size;
  std::vector<std::vector<int64_t>> segments, indices;
  std::vector<int64_t> at;
  size_t next = 0;
  std::string out;

  void Leaf() {
    size_t rank = dense_shape.size();
    std::vector<int64_t> orig(rank, 0);
    for (size_t i = 0; i < rank; ++i) orig[traversal[i]] = at[i];
    for (size_t i = rank; i < at.size(); ++i) {
      size_t b = traversal[i] - rank;
      size_t d = block_map[b];
      orig[d] = orig[d] * block_size[b] + at[i];
    }
    uint64_t flat = 0;
    for (size_t d = 0; d < rank; ++d) {
      if (orig[d] < 0 || orig[d] >= dense_shape[d]) Bad(t, "an index lies outside the shape");
      flat = flat * dense_shape[d] + orig[d];
    }
    if ((next + 1) * element > src.size()) Bad(t, "the stored values run out");
    std::memcpy(out.data() + flat * element, src.data() + next * element, element);
    ++next;
  }

  void Walk(size_t level, int64_t prev) {
    if (level == at.size()) return Leaf();
    if (dense[level]) {
      for (int64_t i = 0; i < dense_size[level]; ++i) {
        at[level] = i;
        Walk(level + 1, prev * dense_size[level] + i);
      }
      return;
    }
    const auto& seg = segments[level];
    const auto& idx = indices[level];
    if (prev < 0 || static_cast<size_t>(prev) + 1 >= seg.size())
      Bad(t, "array_segments is shorter than the levels above it need");
    int64_t begin = seg[prev], end = seg[prev + 1];
    if (begin < 0 || begin > end || static_cast<size_t>(end) > idx.size())
      Bad(t, "array_segments is not a non-decreasing list within array_indices");
    for (int64_t i = begin; i < end; ++i) {
      at[level] = idx[i];
      Walk(level + 1, i);
    }
  }
};

}  // namespace

std::string Densify(const ::tflite::Tensor& t, std::span<const uint8_t> data,
                    const std::vector<int64_t>& shape, size_t element_size, uint64_t max_bytes) {
  const auto& sp = *t.sparsity();
  size_t rank = shape.size();
  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) Bad(t, "a negative dimension");
    if (d > 0 && count > max_bytes / static_cast<uint64_t>(d))
      Bad(t, "the dense tensor is too large");
    count *= static_cast<uint64_t>(d);
  }
  if (count * element_size > max_bytes) Bad(t, "the dense tensor is too large");
  Walker w{t, data, element_size, shape, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  if (sp.traversal_order())
    w.traversal.assign(sp.traversal_order()->begin(), sp.traversal_order()->end());
  if (sp.block_map()) w.block_map.assign(sp.block_map()->begin(), sp.block_map()->end());
  size_t levels = w.traversal.size();
  if (levels < rank || levels != rank + w.block_map.size())
    Bad(t, "traversal_order must list every dimension and block dimension once");
  std::vector<bool> seen(levels, false);
  for (size_t i = 0; i < levels; ++i) {
    int64_t d = w.traversal[i];
    if (d < 0 || static_cast<size_t>(d) >= levels || seen[d])
      Bad(t, "traversal_order is not a permutation");
    if ((i < rank) != (static_cast<size_t>(d) < rank))
      Bad(t, "traversal_order must list the dimensions before the block dimensions");
    seen[d] = true;
  }
  if (!sp.dim_metadata() || sp.dim_metadata()->size() != levels)
    Bad(t, "dim_metadata must have one entry per level");
  // Sizes of the levels: dimensions divided by their blocks, then the block sizes.
  std::vector<int64_t> level_dim(levels);
  for (size_t d = 0; d < rank; ++d) level_dim[d] = shape[d];
  for (size_t b = 0; b < w.block_map.size(); ++b) {
    int64_t d = w.block_map[b];
    if (d < 0 || static_cast<size_t>(d) >= rank) Bad(t, "block_map names no dimension");
    // A block dimension's size is the dense_size of its level (blocks are dense).
    size_t level = 0;
    while (level < levels && w.traversal[level] != static_cast<int64_t>(rank + b)) ++level;
    int64_t size = sp.dim_metadata()->Get(level)->dense_size();
    if (size <= 0 || shape[d] % size != 0) Bad(t, "a block size does not divide its dimension");
    w.block_size.push_back(size);
    level_dim[d] /= size;
    level_dim[rank + b] = size;
  }
  w.dense.resize(levels);
  w.dense_size.resize(levels);
  w.segments.resize(levels);
  w.indices.resize(levels);
  for (size_t i = 0; i < levels; ++i) {
    const auto* meta = sp.dim_metadata()->Get(i);
    int64_t expected = level_dim[w.traversal[i]];
    if (meta->format() == ::tflite::DimensionType_DENSE) {
      if (meta->dense_size() != expected) Bad(t, "a dense level's size does not match the shape");
      w.dense[i] = true;
      w.dense_size[i] = expected;
    } else {
      w.segments[i] = ReadIndexVector(t, meta->array_segments_type(), meta->array_segments());
      w.indices[i] = ReadIndexVector(t, meta->array_indices_type(), meta->array_indices());
      for (int64_t x : w.indices[i])
        if (x < 0 || x >= expected) Bad(t, "an index lies outside its dimension");
    }
  }
  w.out.assign(count * element_size, '\0');
  w.at.assign(levels, 0);
  w.Walk(0, 0);
  if (w.next * element_size != data.size()) Bad(t, "stored values are left over");
  return std::move(w.out);
}

}  // namespace outpost::tflite
