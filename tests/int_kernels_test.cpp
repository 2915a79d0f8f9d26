// The integer kernels: kReference against double-precision at::conv2d (every
// partial sum is an integer far below 2^53, so double is exact), kFast against
// kReference bit for bit on every path this CPU supports (onednn, avx2,
// portable; forced by ScopedIntKernelPath), on 1 and 2 threads, the avx2
// path's exactness limits, and the refusals.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "quant/int_kernels.h"
#include "quant/requantize_avx2.h"
#include "test_util.h"

using namespace dfq;
using dfq::testing::error_of;

namespace {

struct ConvCase {
  std::string name;
  int64_t N, C, H, W, O, KH, KW;
  IntConvGeometry g;  // stride, pad, dilation (h, w each), groups
};

std::vector<ConvCase> conv_cases() {
  return {
      {"1x1", 1, 16, 7, 5, 24, 1, 1, {1, 1, 0, 0, 1, 1, 1}},
      {"3x3 stride 1 pad 1 batch 3", 3, 8, 9, 11, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      {"3x3 stride 2 pad 1", 1, 16, 10, 7, 8, 3, 3, {2, 2, 1, 1, 1, 1, 1}},
      {"3x3 stride 2 pad 0 batch 3", 3, 4, 9, 8, 4, 3, 3, {2, 2, 0, 0, 1, 1, 1}},
      {"3x3 dilation 2", 1, 8, 12, 10, 8, 3, 3, {1, 1, 2, 2, 2, 2, 1}},
      {"3x3 groups 2", 3, 16, 8, 6, 8, 3, 3, {1, 1, 1, 1, 1, 1, 2}},
      {"depthwise 3x3", 1, 16, 9, 7, 16, 3, 3, {1, 1, 1, 1, 1, 1, 16}},
      {"depthwise 3x3 stride 2 multiplier 2", 3, 8, 8, 9, 16, 3, 3, {2, 2, 1, 1, 1, 1, 8}},
      {"5x3 stride 1x2 pad 2x0", 1, 6, 11, 9, 10, 5, 3, {1, 2, 2, 0, 1, 1, 1}},
      {"3 input channels (first layer)", 3, 3, 12, 12, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      // 255 * sum|w| can exceed 2^24: kFast splits the input channels for oneDNN.
      {"256 channels 3x3", 1, 256, 6, 5, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      // A single channel can exceed 2^24 / 255: kFast runs its portable loop.
      {"23x23 kernel", 1, 2, 24, 20, 4, 23, 23, {1, 1, 11, 11, 1, 1, 1}},
  };
}

struct Values {
  std::string name;
  bool is_signed;
  int64_t x_min, x_max, w_min, w_max;
};

std::vector<Values> value_ranges() {
  return {
      {"uint8 x int8", false, 0, 255, -127, 127},
      {"int8 x int8", true, -127, 127, -127, 127},
      {"all 255 x all 127", false, 255, 255, 127, 127},
      {"all 255 x all -127", false, 255, 255, -127, -127},
      {"all -127 x all 127", true, -127, -127, 127, 127},
      {"all 127 x all 127", true, 127, 127, 127, 127},
      {"near 255 x near 127 (odd sums)", false, 250, 255, 120, 127},
      {"near -127 x near 127 (odd sums)", true, -127, -120, 120, 127},
      {"uint4 x int4", false, 0, 15, -7, 7},
      {"int4 x int4", true, -7, 7, -7, 7},
  };
}

at::Tensor random_int(at::IntArrayRef sizes, int64_t lo, int64_t hi, at::ScalarType type, at::Generator& gen) {
  return at::randint(lo, hi + 1, sizes, gen, at::kLong).to(type);
}

// Restores LibTorch's thread count at the end of a test.
class ThreadCount {
 public:
  ThreadCount() : saved_(at::get_num_threads()) {}
  ~ThreadCount() { at::set_num_threads(saved_); }

 private:
  int saved_;
};

// The paths kFast can run on this CPU; the tests force each in turn (ScopedIntKernelPath).
std::vector<IntKernelPath> paths() { return supported_int_kernel_paths(); }

at::Tensor double_conv(const at::Tensor& x, const at::Tensor& w, const IntConvGeometry& g) {
  return at::conv2d(x.to(at::kDouble), w.to(at::kDouble), {}, {g.stride_h, g.stride_w}, {g.pad_h, g.pad_w},
                    {g.dilation_h, g.dilation_w}, g.groups);
}

}  // namespace

TEST(IntKernels, FastPathIsVectorizedOnVnniCpus) {
  // The vectorized path needs AVX-512 VNNI; DNNL_MAX_CPU_ISA may lower oneDNN's ISA.
  if (std::getenv("DNNL_MAX_CPU_ISA") != nullptr) GTEST_SKIP() << "DNNL_MAX_CPU_ISA is set";
  const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  EXPECT_EQ(fast_int_kernels_available(), vnni);
}

TEST(IntKernels, ConvolutionIsExactAndFastEqualsReference) {
  ThreadCount restore;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (const ConvCase& c : conv_cases()) {
    for (const Values& v : value_ranges()) {
      SCOPED_TRACE(c.name + ", " + v.name);
      const at::Tensor w = random_int({c.O, c.C / c.g.groups, c.KH, c.KW}, v.w_min, v.w_max, at::kChar, gen);
      const at::Tensor x = random_int({c.N, c.C, c.H, c.W}, v.x_min, v.x_max, v.is_signed ? at::kChar : at::kByte, gen)
                               .contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor expected = double_conv(x, w, c.g);

      const at::Tensor reference = IntConv2d(w, c.g, IntKernel::kReference).accumulate(x);
      ASSERT_EQ(reference.scalar_type(), at::kInt);
      ASSERT_EQ(reference.sizes(), expected.sizes());
      ASSERT_TRUE(reference.is_contiguous(at::MemoryFormat::ChannelsLast));
      ASSERT_TRUE(at::equal(reference.to(at::kDouble), expected));

      const IntConv2d fast(w, c.g, IntKernel::kFast);
      for (IntKernelPath path : paths()) {
        const ScopedIntKernelPath use(path);
        for (int threads : {1, 2}) {
          at::set_num_threads(threads);
          const at::Tensor y = fast.accumulate(x);
          ASSERT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast)) << int_kernel_path() << ", " << threads << " threads";
          ASSERT_TRUE(at::equal(y, reference)) << int_kernel_path() << ", " << threads << " threads; max |difference| "
                                               << (y - reference).abs().max().item<int64_t>();
        }
      }
    }
  }
}

TEST(IntKernels, OnePreparedConvolutionServesManyShapesAndDtypes) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12);
  const IntConvGeometry g{2, 1, 1, 1, 1, 1, 1};
  const at::Tensor w = random_int({12, 10, 3, 3}, -127, 127, at::kChar, gen);
  const IntConv2d fast(w, g, IntKernel::kFast), reference(w, g, IntKernel::kReference);
  for (int repeat = 0; repeat < 2; ++repeat)
    for (IntKernelPath path : paths())
      for (auto shape : {std::vector<int64_t>{1, 10, 8, 8}, {2, 10, 8, 8}, {1, 10, 13, 6}})
        for (bool is_signed : {false, true}) {
          const ScopedIntKernelPath use(path);
          const at::Tensor x = random_int(shape, is_signed ? -127 : 0, is_signed ? 127 : 255,
                                          is_signed ? at::kChar : at::kByte, gen)
                                   .contiguous(at::MemoryFormat::ChannelsLast);
          ASSERT_TRUE(at::equal(fast.accumulate(x), reference.accumulate(x)))
              << int_kernel_path() << ", " << at::IntArrayRef(shape);
        }
  // An empty batch is an empty result.
  const at::Tensor none = at::zeros({0, 10, 8, 8}, at::kByte).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_EQ(fast.accumulate(none).sizes(), (std::vector<int64_t>{0, 12, 4, 8}));
}

TEST(IntKernels, ConcurrentCallsShareOnePreparedConvolution) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(14);
  const IntConvGeometry g{1, 1, 1, 1, 1, 1, 1};
  // 200 channels of 8-bit extremes need two chunks on oneDNN: both threads share their cached weights.
  const at::Tensor w = random_int({8, 200, 3, 3}, 120, 127, at::kChar, gen);
  const IntConv2d fast(w, g, IntKernel::kFast), reference(w, g, IntKernel::kReference);
  std::vector<at::Tensor> inputs, expected;
  for (int i = 0; i < 4; ++i) {
    inputs.push_back(random_int({1 + i % 2, 200, 5 + i, 6}, i % 2 ? -127 : 0, i % 2 ? 127 : 255,
                                i % 2 ? at::kChar : at::kByte, gen)
                         .contiguous(at::MemoryFormat::ChannelsLast));
    expected.push_back(reference.accumulate(inputs.back()));
  }
  for (IntKernelPath path : paths()) {
    const ScopedIntKernelPath use(path);  // set before the threads start
    std::vector<int> mismatches(2, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, t] {
        for (int repeat = 0; repeat < 5; ++repeat)
          for (size_t i = 0; i < inputs.size(); ++i)
            if (!at::equal(fast.accumulate(inputs[(i + t) % inputs.size()]), expected[(i + t) % inputs.size()]))
              ++mismatches[t];
      });
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(mismatches, (std::vector<int>{0, 0})) << int_kernel_path();
  }
}

TEST(IntKernels, LinearIsExactAndFastEqualsReference) {
  ThreadCount restore;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
  struct LinearCase {
    int64_t N, I, O;
  };
  // 4096 inputs exceed 2^24 / 255 per output with 8-bit extremes: chunked for oneDNN.
  for (const LinearCase& c : {LinearCase{1, 64, 10}, LinearCase{5, 300, 17}, LinearCase{3, 4096, 8}}) {
    for (const Values& v : value_ranges()) {
      SCOPED_TRACE(std::to_string(c.N) + "x" + std::to_string(c.I) + " -> " + std::to_string(c.O) + ", " + v.name);
      const at::Tensor w = random_int({c.O, c.I}, v.w_min, v.w_max, at::kChar, gen);
      const at::Tensor x = random_int({c.N, c.I}, v.x_min, v.x_max, v.is_signed ? at::kChar : at::kByte, gen);
      const at::Tensor expected = at::linear(x.to(at::kDouble), w.to(at::kDouble));

      const at::Tensor reference = IntLinear(w, IntKernel::kReference).accumulate(x);
      ASSERT_EQ(reference.scalar_type(), at::kInt);
      ASSERT_TRUE(at::equal(reference.to(at::kDouble), expected));

      const IntLinear fast(w, IntKernel::kFast);
      for (IntKernelPath path : paths()) {
        const ScopedIntKernelPath use(path);
        for (int threads : {1, 2}) {
          at::set_num_threads(threads);
          ASSERT_TRUE(at::equal(fast.accumulate(x), reference)) << int_kernel_path() << ", " << threads << " threads";
        }
      }
    }
  }
}

TEST(IntKernels, RefusesBadWeightsGeometryAndInputs) {
  const at::Tensor w = at::ones({4, 2, 3, 3}, at::kChar);
  const IntConvGeometry same{1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(error_of([&] { IntConv2d(w.to(at::kFloat), same, IntKernel::kFast); }),
            "IntConv2d weight: expected non-empty int8 [O, I/groups, kH, kW], found float32 [4, 2, 3, 3]");
  EXPECT_EQ(error_of([&] { IntConv2d(at::full_like(w, -128), same, IntKernel::kFast); }),
            "IntConv2d weight: expected values in [-127, 127], found minimum -128");
  EXPECT_EQ(error_of([&] { IntConv2d(w, IntConvGeometry{1, 1, 1, 1, 1, 1, 3}, IntKernel::kFast); }),
            "IntConv2d geometry: expected stride >= 1, padding >= 0, dilation >= 1 and groups >= 1 dividing the "
            "output channels, found stride 1x1, padding 1x1, dilation 1x1, groups 3 for 4 output channels");
  EXPECT_EQ(error_of([&] { IntConv2d(w, IntConvGeometry{0, 1, 0, 0, 1, 1, 1}, IntKernel::kFast); }),
            "IntConv2d geometry: expected stride >= 1, padding >= 0, dilation >= 1 and groups >= 1 dividing the "
            "output channels, found stride 0x1, padding 0x0, dilation 1x1, groups 1 for 4 output channels");
  // 255 * 7400 * 9 * 127 > 2^31 - 1: an accumulator could overflow int32.
  EXPECT_EQ(error_of([&] { IntConv2d(at::full({1, 7400, 3, 3}, 127, at::kChar), same, IntKernel::kFast); }),
            "IntConv2d weight: expected sum |w| <= 8421504 per output channel (int32 accumulators), found 8458200");

  const IntConv2d conv(w, same, IntKernel::kFast);
  const auto channels_last = at::MemoryFormat::ChannelsLast;
  EXPECT_EQ(error_of([&] { conv.accumulate(at::zeros({1, 2, 5, 5}).contiguous(channels_last)); }),
            "IntConv2d input: expected uint8 or int8 [N, C, H, W], found float32 [1, 2, 5, 5]");
  EXPECT_EQ(error_of([&] { conv.accumulate(at::zeros({2, 5, 5}, at::kByte)); }),
            "IntConv2d input: expected uint8 or int8 [N, C, H, W], found uint8 [2, 5, 5]");
  EXPECT_EQ(error_of([&] { conv.accumulate(at::zeros({1, 2, 5, 5}, at::kByte)); }),
            "IntConv2d input: expected channels-last memory format (x.contiguous(at::MemoryFormat::ChannelsLast)), "
            "found strides [50, 25, 5, 1] for sizes [1, 2, 5, 5]");
  EXPECT_EQ(error_of([&] { conv.accumulate(at::zeros({1, 3, 5, 5}, at::kChar).contiguous(channels_last)); }),
            "IntConv2d input: expected 2 channels (weight [4, 2, 3, 3], groups 1), found 3 channels");
  const IntConv2d valid(w, IntConvGeometry{}, IntKernel::kFast);
  EXPECT_EQ(error_of([&] { valid.accumulate(at::zeros({1, 2, 2, 5}, at::kByte).contiguous(channels_last)); }),
            "IntConv2d input: expected a padded input of at least the dilated kernel, 3x3, found 2x5 with padding");

  const at::Tensor lw = at::ones({3, 4}, at::kChar);
  EXPECT_EQ(error_of([&] { IntLinear(lw.view({3, 4, 1, 1}), IntKernel::kFast); }),
            "IntLinear weight: expected non-empty int8 [O, I], found int8 [3, 4, 1, 1]");
  const IntLinear linear(lw, IntKernel::kFast);
  EXPECT_EQ(error_of([&] { linear.accumulate(at::zeros({2, 4}, at::kInt)); }),
            "IntLinear input: expected uint8 or int8 [N, I], found int32 [2, 4]");
  EXPECT_EQ(error_of([&] { linear.accumulate(at::zeros({4, 2}, at::kByte).t()); }),
            "IntLinear input: expected a contiguous tensor, found strides [1, 2] for sizes [2, 4]");
  EXPECT_EQ(error_of([&] { linear.accumulate(at::zeros({2, 5}, at::kByte)); }),
            "IntLinear input: expected 4 features (weight 3x4), found 5 features");
}

TEST(IntKernels, PackedFourBitWeightsGiveTheSameAccumulatorsInLessMemory) {
  ThreadCount restore;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(15);
  for (const ConvCase& c : conv_cases()) {
    for (bool is_signed : {false, true}) {
      SCOPED_TRACE(c.name + (is_signed ? ", int8 input" : ", uint8 input"));
      // [-8, 7]: the full two's-complement nibble range; an odd weight count leaves a half byte.
      const at::Tensor w = random_int({c.O, c.C / c.g.groups, c.KH, c.KW}, -8, 7, at::kChar, gen);
      const at::Tensor x = random_int({c.N, c.C, c.H, c.W}, is_signed ? -127 : 0, is_signed ? 127 : 255,
                                      is_signed ? at::kChar : at::kByte, gen)
                               .contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor expected = double_conv(x, w, c.g);
      for (IntKernelPath path : paths())
        for (IntKernel kernel : {IntKernel::kReference, IntKernel::kFast}) {
          const ScopedIntKernelPath use(path);
          const IntConv2d packed(w, c.g, kernel, WeightStorage::kPacked4);
          const IntConv2d unpacked(w, c.g, kernel, WeightStorage::kInt8);
          for (int threads : {1, 2}) {
            at::set_num_threads(threads);
            const at::Tensor y = packed.accumulate(x);
            ASSERT_TRUE(at::equal(y.to(at::kDouble), expected)) << int_kernel_path() << ", " << threads << " threads";
            ASSERT_TRUE(at::equal(y, unpacked.accumulate(x))) << int_kernel_path() << ", " << threads << " threads";
          }
          // After the calls (the path's reordered or packed copy exists for unpacked weights by now);
          // the avx2 and avx_vnni paths keep their own layout, at least a byte per weight, for packed ones too.
          if (kernel == IntKernel::kFast && (path == IntKernelPath::kAvx2 || path == IntKernelPath::kAvxVnni))
            EXPECT_GE(packed.weight_bytes(), (w.numel() + 1) / 2 + w.numel());
          else
            EXPECT_EQ(packed.weight_bytes(), (w.numel() + 1) / 2);
          EXPECT_GE(unpacked.weight_bytes(), w.numel());
        }
    }
  }
  const at::Tensor lw = random_int({10, 65}, -8, 7, at::kChar, gen);
  const at::Tensor lx = random_int({3, 65}, 0, 255, at::kByte, gen);
  for (IntKernelPath path : paths())
    for (IntKernel kernel : {IntKernel::kReference, IntKernel::kFast}) {
      const ScopedIntKernelPath use(path);
      const IntLinear packed(lw, kernel, WeightStorage::kPacked4);
      EXPECT_TRUE(at::equal(packed.accumulate(lx).to(at::kDouble), at::linear(lx.to(at::kDouble), lw.to(at::kDouble))))
          << int_kernel_path();
      if (kernel == IntKernel::kFast && (path == IntKernelPath::kAvx2 || path == IntKernelPath::kAvxVnni)) EXPECT_GE(packed.weight_bytes(), 325 + 650);
      else EXPECT_EQ(packed.weight_bytes(), 325);
    }
  EXPECT_EQ(error_of([&] { IntConv2d(at::full({2, 2, 1, 1}, 8, at::kChar), IntConvGeometry{}, IntKernel::kFast,
                                     WeightStorage::kPacked4); }),
            "IntConv2d weight (packed 4-bit storage): expected values in [-8, 7], found [8, 8]");
}

// The integer engine calls one prepared kernel from several threads at once
// (its batch slices): every concurrent call gives the accumulators of a serial one.
TEST(IntKernels, ConcurrentCallsGiveTheSerialAccumulators) {
  ThreadCount restore;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(16);
  std::vector<ConvCase> cases = conv_cases();
  cases.push_back({"1 input channel, batch 4", 4, 1, 28, 28, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}});
  for (IntKernelPath path : paths())
  for (const ConvCase& c : cases)
    for (bool is_signed : {false, true})
      for (WeightStorage storage : {WeightStorage::kInt8, WeightStorage::kPacked4}) {
        const ScopedIntKernelPath use(path);
        SCOPED_TRACE(std::string(int_kernel_path()) + ", " + c.name + (storage == WeightStorage::kPacked4 ? ", packed" : ", int8") +
                     (is_signed ? ", int8 input" : ", uint8 input"));
        const at::Tensor w = random_int({c.O, c.C / c.g.groups, c.KH, c.KW}, -8, 7, at::kChar, gen);
        std::vector<at::Tensor> inputs, serial(8), concurrent(8);
        for (int k = 0; k < 8; ++k)
          inputs.push_back(random_int({c.N, c.C, c.H, c.W}, is_signed ? -127 : 0, is_signed ? 127 : 255,
                                      is_signed ? at::kChar : at::kByte, gen)
                               .contiguous(at::MemoryFormat::ChannelsLast));
        // First calls inside the parallel region (the primitives are made there), then serial ones.
        const IntConv2d conv(w, c.g, IntKernel::kFast, storage);
        at::set_num_threads(2);
        at::parallel_for(0, 8, 1, [&](int64_t begin, int64_t end) {
          for (int64_t k = begin; k < end; ++k) concurrent[k] = conv.accumulate(inputs[k]);
        });
        at::set_num_threads(1);
        for (int k = 0; k < 8; ++k) serial[k] = conv.accumulate(inputs[k]);
        for (int k = 0; k < 8; ++k) {
          ASSERT_TRUE(at::equal(serial[k].to(at::kDouble), double_conv(inputs[k], w, c.g))) << "serial call " << k;
          ASSERT_TRUE(at::equal(serial[k], concurrent[k])) << "call " << k;
        }
      }
  for (IntKernelPath path : paths())
  for (WeightStorage storage : {WeightStorage::kInt8, WeightStorage::kPacked4}) {
    const ScopedIntKernelPath use(path);
    const IntLinear linear(random_int({10, 192}, -8, 7, at::kChar, gen), IntKernel::kFast, storage);
    std::vector<at::Tensor> inputs, serial(8), concurrent(8);
    for (int k = 0; k < 8; ++k) inputs.push_back(random_int({4, 192}, 0, 255, at::kByte, gen));
    at::set_num_threads(1);
    for (int k = 0; k < 8; ++k) serial[k] = linear.accumulate(inputs[k]);
    at::set_num_threads(2);
    at::parallel_for(0, 8, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) concurrent[k] = linear.accumulate(inputs[k]);
    });
    for (int k = 0; k < 8; ++k) ASSERT_TRUE(at::equal(serial[k], concurrent[k])) << int_kernel_path() << ", linear call " << k;
  }
}

TEST(IntKernels, PathsCanBeForcedAndBadChoicesAreRefused) {
  const std::vector<IntKernelPath> supported = paths();
  ASSERT_FALSE(supported.empty());
  EXPECT_EQ(supported.back(), IntKernelPath::kPortable);
  EXPECT_EQ(int_kernel_path_supported(IntKernelPath::kOnednn), fast_int_kernels_available());
#if defined(__x86_64__)
  EXPECT_EQ(int_kernel_path_supported(IntKernelPath::kAvx2), __builtin_cpu_supports("avx2") != 0);
#else
  EXPECT_FALSE(int_kernel_path_supported(IntKernelPath::kAvx2));
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  EXPECT_EQ(int_kernel_path_supported(IntKernelPath::kAvxVnni),
            __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("avxvnni") != 0);
#else
  EXPECT_FALSE(int_kernel_path_supported(IntKernelPath::kAvxVnni));
#endif
  // Without a ScopedIntKernelPath: DFQ_INT_KERNELS's path when set, else the best one.
  const char* env = std::getenv("DFQ_INT_KERNELS");
  const std::string by_default = env != nullptr && *env != '\0' ? env : int_kernel_path_name(supported.front());
  EXPECT_EQ(int_kernel_path(), by_default);
  for (IntKernelPath path : supported) {
    {
      const ScopedIntKernelPath use(path);
      EXPECT_EQ(int_kernel_path(), std::string(int_kernel_path_name(path)));
      {
        const ScopedIntKernelPath inner(IntKernelPath::kPortable);
        EXPECT_EQ(int_kernel_path(), std::string("portable"));
      }
      EXPECT_EQ(int_kernel_path(), std::string(int_kernel_path_name(path)));
    }
    EXPECT_EQ(parse_int_kernel_path(int_kernel_path_name(path)), path);
  }
  EXPECT_EQ(int_kernel_path(), by_default);

  std::string list;  // e.g. "onednn, avx2 or portable"
  for (size_t i = 0; i < supported.size(); ++i)
    list += (i == 0 ? "" : i + 1 == supported.size() ? " or " : ", ") + std::string(int_kernel_path_name(supported[i]));
  const std::string expected =
      "DFQ_INT_KERNELS: expected onednn, avx_vnni, avx2 or portable, one this CPU supports (" + list + "), found ";
  EXPECT_EQ(error_of([] { parse_int_kernel_path("avx512"); }), expected + "'avx512'");
  EXPECT_EQ(error_of([] { parse_int_kernel_path("AVX2"); }), expected + "'AVX2'");
  for (IntKernelPath path : {IntKernelPath::kOnednn, IntKernelPath::kAvxVnni, IntKernelPath::kAvx2}) {
    if (int_kernel_path_supported(path)) continue;
    const std::string name = int_kernel_path_name(path);
    EXPECT_EQ(error_of([&] { parse_int_kernel_path(name); }), expected + "'" + name + "'");
    EXPECT_EQ(error_of([&] { ScopedIntKernelPath use(path); }),
              "ScopedIntKernelPath: expected a path this CPU supports (" + list + "), found '" + name + "'");
  }
}

namespace {

// A set of values for the exactness limits: uniform in [lo, hi], or (extremes)
// only lo and hi.
struct ValueSet {
  std::string name;
  int64_t lo, hi;
  bool extremes;
};

at::Tensor values(at::IntArrayRef sizes, const ValueSet& v, at::ScalarType type, at::Generator& gen) {
  if (!v.extremes) return random_int(sizes, v.lo, v.hi, type, gen);
  const at::Tensor pick = random_int(sizes, 0, 1, at::kLong, gen);
  return (v.lo + pick * (v.hi - v.lo)).to(type);
}

// The weights at the avx2 path's limits (int_kernels_avx2.cpp): 2 * 255 * 64
// is vpmaddubsw's largest exact pair, and d vpmaddubsw results are summed in
// int16 for max|w| <= 8 (d = 8), 16 (4), 32 (2), 64 (1); 8-bit weights take vpmaddwd.
std::vector<ValueSet> limit_weights() {
  return {
      {"±64 (vpmaddubsw limit)", -64, 64, true},
      {"all 64", 64, 64, false},
      {"all -64", -64, -64, false},
      {"7-bit [-64, 63]", -64, 63, false},
      {"±65 (8-bit scheme)", -65, 65, true},
      {"±8 (8 sums in int16)", -8, 8, true},
      {"4-bit [-8, 7]", -8, 7, false},
      {"±9 (4 sums)", -9, 9, true},
      {"±16 (4 sums)", -16, 16, true},
      {"±17 (2 sums)", -17, 17, true},
      {"±32 (2 sums)", -32, 32, true},
      {"±33 (1 sum)", -33, 33, true},
      {"8-bit ±127", -127, 127, true},
      {"8-bit [-127, 127]", -127, 127, false},
  };
}

std::vector<Values> limit_activations() {
  return {
      {"uint8 all 255", false, 255, 255, 0, 0},    {"uint8 [0, 255]", false, 0, 255, 0, 0},
      {"int8 all -128", true, -128, -128, 0, 0},   {"int8 all 127", true, 127, 127, 0, 0},
      {"int8 [-128, 127]", true, -128, 127, 0, 0},
  };
}

std::vector<ConvCase> limit_shapes() {
  return {
      {"1x1, 5 -> 3 channels", 1, 5, 4, 3, 3, 1, 1, {1, 1, 0, 0, 1, 1, 1}},
      {"C=1 3x3 -> 17, batch 2", 2, 1, 6, 5, 17, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      {"7 -> 33 3x3 stride 2 pad 1", 1, 7, 9, 8, 33, 3, 3, {2, 2, 1, 1, 1, 1, 1}},
      {"13 -> 10 3x3 dilation 2 pad 2", 1, 13, 9, 10, 10, 3, 3, {1, 1, 2, 2, 2, 2, 1}},
      {"groups 3 (3 -> 5 each), batch 2", 2, 9, 6, 7, 15, 3, 3, {1, 1, 1, 1, 1, 1, 3}},
      {"groups 2 (12 -> 20 each) 1x1", 1, 24, 5, 5, 40, 1, 1, {1, 1, 0, 0, 1, 1, 2}},
      {"depthwise 17 3x3 pad 1", 1, 17, 7, 6, 17, 3, 3, {1, 1, 1, 1, 1, 1, 17}},
      {"depthwise 40 3x3 stride 2 dilation 2, batch 2", 2, 40, 9, 9, 40, 3, 3, {2, 2, 2, 2, 2, 2, 40}},
      {"depthwise 1 channel 5x5 pad 2", 1, 1, 6, 7, 1, 5, 5, {1, 1, 2, 2, 1, 1, 1}},
      {"depthwise 32 5x4 stride 1x2 pad 2x1", 1, 32, 8, 9, 32, 5, 4, {1, 2, 2, 1, 1, 1, 32}},
      {"depthwise multiplier 3", 1, 4, 6, 6, 12, 3, 3, {1, 1, 1, 1, 1, 1, 4}},
      {"7x7 stride 2 pad 3", 1, 3, 16, 15, 8, 7, 7, {2, 2, 3, 3, 1, 1, 1}},
      {"7x7 on a 1x1 input pad 3", 1, 6, 1, 1, 9, 7, 7, {1, 1, 3, 3, 1, 1, 1}},
      {"1x1 input 1x1 kernel, batch 3", 3, 4, 1, 1, 5, 1, 1, {1, 1, 0, 0, 1, 1, 1}},
      {"2x2 input 3x3 pad 1", 1, 16, 2, 2, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      {"5x3 stride 1x2 pad 2x0", 1, 6, 11, 9, 18, 5, 3, {1, 2, 2, 0, 1, 1, 1}},
      {"48x40 4 -> 16 3x3 pad 1 (many tiles)", 1, 4, 48, 40, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      {"256 -> 16 3x3 (long reduction)", 1, 256, 5, 4, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      {"32 -> 24 3x3 pad 1 (rows read in place), batch 2", 2, 32, 9, 7, 24, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
      {"depthwise 16 32x32, batch 3", 3, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1, 1, 16}},
  };
}

}  // namespace

// The avx2 path gives kReference's accumulators bit for bit for weights and
// activations at the edges of what each vpmaddubsw / int16 sum can hold
// exactly, on shapes that leave partial blocks and tiles. The avx_vnni path
// (vpdpbusd, every int8 weight as bytes) runs the same cases where the CPU has it.
std::vector<IntKernelPath> avx_paths() {
  std::vector<IntKernelPath> paths;
  for (IntKernelPath path : {IntKernelPath::kAvxVnni, IntKernelPath::kAvx2})
    if (int_kernel_path_supported(path)) paths.push_back(path);
  return paths;
}

TEST(IntKernels, Avx2LimitsAreExact) {
  if (!int_kernel_path_supported(IntKernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  ThreadCount restore;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  // Even combinations run on 1 thread, odd ones on 2 (every shape sees both;
  // the thread count changes once: at::set_num_threads remakes thread pools).
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    int combination = 0;
    for (const ConvCase& c : limit_shapes())
      for (const ValueSet& wv : limit_weights())
        for (const Values& xv : limit_activations()) {
          if (combination++ % 2 != threads - 1) continue;
          SCOPED_TRACE(c.name + ", weights " + wv.name + ", " + xv.name + ", " + std::to_string(threads) + " threads");
          const at::Tensor w = values({c.O, c.C / c.g.groups, c.KH, c.KW}, wv, at::kChar, gen);
          const at::Tensor x =
              values({c.N, c.C, c.H, c.W}, {"", xv.x_min, xv.x_max, xv.x_max == 127 && xv.x_min == -128},
                     xv.is_signed ? at::kChar : at::kByte, gen)
                  .contiguous(at::MemoryFormat::ChannelsLast);
          const at::Tensor reference = IntConv2d(w, c.g, IntKernel::kReference).accumulate(x);
          const bool packable = wv.lo >= -8 && wv.hi <= 7;
          for (IntKernelPath path : avx_paths()) {
            const ScopedIntKernelPath use(path);
            for (WeightStorage storage : {WeightStorage::kInt8, WeightStorage::kPacked4}) {
              if (storage == WeightStorage::kPacked4 && !packable) continue;
              const at::Tensor y = IntConv2d(w, c.g, IntKernel::kFast, storage).accumulate(x);
              ASSERT_TRUE(at::equal(y, reference))
                  << int_kernel_path() << (storage == WeightStorage::kPacked4 ? ", packed; " : "; ")
                  << "max |difference| " << (y - reference).abs().max().item<int64_t>();
            }
          }
        }
  }
}

TEST(IntKernels, Avx2LinearLimitsAreExact) {
  if (!int_kernel_path_supported(IntKernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  ThreadCount restore;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(18);
  struct LinearCase {
    int64_t N, I, O;
  };
  // One sample and 70 outputs: on 2 threads the channel blocks are split between them.
  for (int threads : {1, 2}) {  // even combinations on 1 thread, odd ones on 2
    at::set_num_threads(threads);
    int combination = 0;
    for (const LinearCase& c : {LinearCase{1, 300, 70}, LinearCase{5, 4096, 8}, LinearCase{17, 33, 1}})
      for (const ValueSet& wv : limit_weights())
        for (const Values& xv : limit_activations()) {
          if (combination++ % 2 != threads - 1) continue;
          SCOPED_TRACE(std::to_string(c.N) + "x" + std::to_string(c.I) + " -> " + std::to_string(c.O) + ", weights " +
                       wv.name + ", " + xv.name + ", " + std::to_string(threads) + " threads");
          const at::Tensor w = values({c.O, c.I}, wv, at::kChar, gen);
          const at::Tensor x = values({c.N, c.I}, {"", xv.x_min, xv.x_max, xv.x_max == 127 && xv.x_min == -128},
                                      xv.is_signed ? at::kChar : at::kByte, gen);
          const at::Tensor reference = IntLinear(w, IntKernel::kReference).accumulate(x);
          ASSERT_TRUE(at::equal(reference.to(at::kDouble), at::linear(x.to(at::kDouble), w.to(at::kDouble))));
          for (IntKernelPath path : avx_paths()) {
            const ScopedIntKernelPath use(path);
            ASSERT_TRUE(at::equal(IntLinear(w, IntKernel::kFast).accumulate(x), reference)) << int_kernel_path();
          }
        }
  }
}

// The avx2 path keeps weights up to |w| = 64 as bytes for vpmaddubsw (one byte
// per weight plus 128 * sum(w) per output channel) and wider ones as int16:
// the boundary cases above do reach vpmaddubsw's limit.
TEST(IntKernels, Avx2PacksSevenBitWeightsAsBytes) {
  if (!int_kernel_path_supported(IntKernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  const ScopedIntKernelPath use(IntKernelPath::kAvx2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(19);
  const at::Tensor x = random_int({1, 64, 4, 4}, 0, 255, at::kByte, gen).contiguous(at::MemoryFormat::ChannelsLast);
  const IntConvGeometry g{1, 1, 1, 1, 1, 1, 1};
  for (int64_t m : {64, 65}) {
    const at::Tensor w = values({16, 64, 3, 3}, {"", -m, m, true}, at::kChar, gen);
    const IntConv2d fast(w, g, IntKernel::kFast);
    EXPECT_TRUE(at::equal(fast.accumulate(x), IntConv2d(w, g, IntKernel::kReference).accumulate(x))) << m;
    EXPECT_EQ(fast.weight_bytes(), w.numel() + (m <= 64 ? w.numel() + 16 * 4 : 2 * w.numel())) << m;
  }
}

// A manual speed probe, not a benchmark (run with --gtest_also_run_disabled_tests
// on a quiet machine): the best of 5 calls per path, 1 thread, for a few layer shapes.
TEST(IntKernels, DISABLED_PathSpeedProbe) {
  ThreadCount restore;
  at::set_num_threads(1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(20);
  struct Layer {
    std::string name;
    ConvCase c;
  };
  const std::vector<Layer> layers = {
      {"3x3 64 -> 64, 8 x 8x8", {"", 8, 64, 8, 8, 64, 3, 3, {1, 1, 1, 1, 1, 1, 1}}},
      {"3x3 16 -> 16, 8 x 32x32", {"", 8, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}}},
      {"depthwise 3x3 96, 56x56", {"", 1, 96, 56, 56, 96, 3, 3, {1, 1, 1, 1, 1, 1, 96}}},
      {"1x1 96 -> 24, 56x56", {"", 1, 96, 56, 56, 24, 1, 1, {1, 1, 0, 0, 1, 1, 1}}},
  };
  for (const Layer& l : layers)
    for (int64_t m : {7, 127}) {
      const ConvCase& c = l.c;
      const at::Tensor w = random_int({c.O, c.C / c.g.groups, c.KH, c.KW}, -m, m, at::kChar, gen);
      const at::Tensor x = random_int({c.N, c.C, c.H, c.W}, 0, 255, at::kByte, gen).contiguous(at::MemoryFormat::ChannelsLast);
      const IntConv2d conv(w, c.g, IntKernel::kFast);
      for (IntKernelPath path : paths()) {
        const ScopedIntKernelPath use(path);
        double best = 1e9;
        const int repeats = std::getenv("DFQ_PROBE_REPEATS") ? std::atoi(std::getenv("DFQ_PROBE_REPEATS")) : 5;
        for (int k = 0; k < repeats; ++k) {
          const auto start = std::chrono::steady_clock::now();
          conv.accumulate(x);
          best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
        }
        std::printf("%-28s |w| <= %3lld  %-8s %8.3f ms\n", l.name.c_str(), static_cast<long long>(m), int_kernel_path(), best);
      }
    }
}

// The AVX2 requantization against an __int128 reference of dyadic.h's
// rounding (half away from zero) and the clamp, at the edges of its
// preconditions: |acc| = bound - |bias| with bound up to 2^31 - 1, multipliers up to 2^61
// in magnitude (wide, negative), shifts 0..62 with exact ties, b at -128 and
// 255, spans with a tail of fewer than 8 elements; and the refusals.
TEST(IntKernels, Avx2RequantizationIsExactAtItsBounds) {
  if (!int_kernel_path_supported(IntKernelPath::kAvx2)) GTEST_SKIP() << "no AVX2";
  using dfq::detail::avx2::Requant32;
  std::mt19937_64 rng(17);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto reference = [](__int128 p, int s, int64_t lo, int64_t hi) {
    const __int128 half = s > 0 ? static_cast<__int128>(1) << (s - 1) : 0;
    const __int128 q = p >= 0 ? (p + half) >> s : -((-p + half) >> s);
    return static_cast<int64_t>(q < lo ? lo : q > hi ? hi : q);
  };
  int accepted = 0, wide = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const bool add = trial % 2 == 1;
    const int64_t n = 8 * pick(1, 4) + pick(0, 7);
    const int64_t bound = trial % 5 == 0 ? (int64_t{1} << 31) - 1 : pick(1, int64_t{1} << pick(1, 30));
    const int s = static_cast<int>(trial % 7 == 0 ? pick(0, 2) : pick(20, 62));
    std::vector<int64_t> bias(n), m(n), mb(n), shift(n, s);
    for (int64_t i = 0; i < n; ++i) {
      bias[i] = pick(-bound / 2, bound / 2);
      // Magnitudes up to the precondition: bound |m| + 255 |mb| + half < 2^62, rounded < 2^31.
      const int mbits = static_cast<int>(std::min<int64_t>(61, pick(0, s + 31 - 64 + __builtin_clzll(bound) + 1)));
      m[i] = pick(0, (int64_t{1} << std::max(mbits, 0)) - 1) * (pick(0, 3) == 0 ? -1 : 1);
      mb[i] = add ? pick(-(int64_t{1} << std::min(s + 20, 53)), int64_t{1} << std::min(s + 20, 53)) : 0;
    }
    Requant32 c;
    if (!dfq::detail::avx2::prepare_requant32(bias.data(), m.data(), add ? mb.data() : nullptr, shift.data(), n, bound, c))
      continue;
    ++accepted;
    wide += c.wide;
    for (bool is_unsigned : {true, false}) {
      const int64_t lo = is_unsigned ? 0 : -127, hi = is_unsigned ? 255 : 127;
      std::vector<int32_t> acc(n);
      std::vector<uint8_t> bu(n);
      std::vector<int8_t> bs(n);
      for (int64_t i = 0; i < n; ++i) {
        // The engine's bound: |acc| <= bound - |bias| (so |acc + bias| <= bound).
        const int64_t reach = bound - std::abs(bias[i]);
        acc[i] = static_cast<int32_t>(i % 4 == 0 ? reach : i % 4 == 1 ? -reach : pick(-reach, reach));
        bu[i] = static_cast<uint8_t>(i % 3 == 0 ? 255 : pick(0, 255));
        bs[i] = static_cast<int8_t>(i % 3 == 0 ? -128 : pick(-128, 127));
      }
      std::vector<uint8_t> ou(n);
      std::vector<int8_t> os(n);
      if (!add && is_unsigned) dfq::detail::avx2::requantize32(c, acc.data(), n, 0, 255, ou.data());
      if (!add && !is_unsigned) dfq::detail::avx2::requantize32(c, acc.data(), n, -127, 127, os.data());
      if (add && is_unsigned) dfq::detail::avx2::add_requantize32(c, acc.data(), bu.data(), n, 0, 255, ou.data());
      if (add && !is_unsigned) dfq::detail::avx2::add_requantize32(c, acc.data(), bs.data(), n, -127, 127, os.data());
      for (int64_t i = 0; i < n; ++i) {
        const __int128 b = !add ? 0 : is_unsigned ? bu[i] : bs[i];
        const __int128 p = static_cast<__int128>(int64_t{acc[i]} + bias[i]) * m[i] + b * mb[i];
        const int64_t got = is_unsigned ? int64_t{ou[i]} : int64_t{os[i]};
        ASSERT_EQ(got, reference(p, s, lo, hi)) << "trial " << trial << " element " << i << " of " << n;
      }
    }
  }
  EXPECT_GE(accepted, 100);
  EXPECT_GE(wide, 20);
  // Refused: a bound over int32, a multiplier of 2^62, a rounded magnitude of 2^31.
  const int64_t zero = 0, one = 1, big = int64_t{1} << 62, s30 = 30;
  Requant32 c;
  EXPECT_FALSE(dfq::detail::avx2::prepare_requant32(&zero, &one, nullptr, &zero, 1, int64_t{1} << 31, c));
  EXPECT_FALSE(dfq::detail::avx2::prepare_requant32(&zero, &big, nullptr, &s30, 1, 1, c));
  const int64_t m31 = int64_t{1} << 30;  // (2^31 - 1) 2^30 / 2^0 >= 2^31
  EXPECT_FALSE(dfq::detail::avx2::prepare_requant32(&zero, &m31, nullptr, &zero, 1, (int64_t{1} << 31) - 1, c));
  EXPECT_TRUE(dfq::detail::avx2::prepare_requant32(&zero, &m31, nullptr, &s30, 1, (int64_t{1} << 31) - 1, c));
}
