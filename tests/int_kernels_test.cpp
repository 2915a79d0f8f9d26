// The integer kernels: kReference against double-precision at::conv2d (every
// partial sum is an integer far below 2^53, so double is exact), kFast against
// kReference bit for bit, on 1 and 2 threads, and the refusals.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "quant/int_kernels.h"
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
      for (int threads : {1, 2}) {
        at::set_num_threads(threads);
        const at::Tensor y = fast.accumulate(x);
        ASSERT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast)) << threads << " threads";
        ASSERT_TRUE(at::equal(y, reference)) << threads << " threads; max |difference| "
                                             << (y - reference).abs().max().item<int64_t>();
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
    for (auto shape : {std::vector<int64_t>{1, 10, 8, 8}, {2, 10, 8, 8}, {1, 10, 13, 6}})
      for (bool is_signed : {false, true}) {
        const at::Tensor x = random_int(shape, is_signed ? -127 : 0, is_signed ? 127 : 255,
                                        is_signed ? at::kChar : at::kByte, gen)
                                 .contiguous(at::MemoryFormat::ChannelsLast);
        ASSERT_TRUE(at::equal(fast.accumulate(x), reference.accumulate(x))) << at::IntArrayRef(shape);
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
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0}));
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
      for (int threads : {1, 2}) {
        at::set_num_threads(threads);
        ASSERT_TRUE(at::equal(fast.accumulate(x), reference)) << threads << " threads";
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

TEST(IntKernels, PackedFourBitWeightsGiveTheSameAccumulatorsInHalfTheMemory) {
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
      for (IntKernel kernel : {IntKernel::kReference, IntKernel::kFast}) {
        const IntConv2d packed(w, c.g, kernel, WeightStorage::kPacked4);
        const IntConv2d unpacked(w, c.g, kernel, WeightStorage::kInt8);
        for (int threads : {1, 2}) {
          at::set_num_threads(threads);
          const at::Tensor y = packed.accumulate(x);
          ASSERT_TRUE(at::equal(y.to(at::kDouble), expected)) << threads << " threads";
          ASSERT_TRUE(at::equal(y, unpacked.accumulate(x))) << threads << " threads";
        }
        // After the calls (oneDNN's reordered copy exists for unpacked weights by now).
        EXPECT_EQ(packed.weight_bytes(), (w.numel() + 1) / 2);
        EXPECT_GE(unpacked.weight_bytes(), w.numel());
      }
    }
  }
  const at::Tensor lw = random_int({10, 65}, -8, 7, at::kChar, gen);
  const at::Tensor lx = random_int({3, 65}, 0, 255, at::kByte, gen);
  for (IntKernel kernel : {IntKernel::kReference, IntKernel::kFast}) {
    const IntLinear packed(lw, kernel, WeightStorage::kPacked4);
    EXPECT_TRUE(at::equal(packed.accumulate(lx).to(at::kDouble), at::linear(lx.to(at::kDouble), lw.to(at::kDouble))));
    EXPECT_EQ(packed.weight_bytes(), 325);
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
  for (const ConvCase& c : cases)
    for (bool is_signed : {false, true})
      for (WeightStorage storage : {WeightStorage::kInt8, WeightStorage::kPacked4}) {
        SCOPED_TRACE(c.name + (storage == WeightStorage::kPacked4 ? ", packed" : ", int8") + (is_signed ? ", int8 input" : ", uint8 input"));
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
  for (WeightStorage storage : {WeightStorage::kInt8, WeightStorage::kPacked4}) {
    const IntLinear linear(random_int({10, 192}, -8, 7, at::kChar, gen), IntKernel::kFast, storage);
    std::vector<at::Tensor> inputs, serial(8), concurrent(8);
    for (int k = 0; k < 8; ++k) inputs.push_back(random_int({4, 192}, 0, 255, at::kByte, gen));
    at::set_num_threads(1);
    for (int k = 0; k < 8; ++k) serial[k] = linear.accumulate(inputs[k]);
    at::set_num_threads(2);
    at::parallel_for(0, 8, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) concurrent[k] = linear.accumulate(inputs[k]);
    });
    for (int k = 0; k < 8; ++k) ASSERT_TRUE(at::equal(serial[k], concurrent[k])) << "linear call " << k;
  }
}
