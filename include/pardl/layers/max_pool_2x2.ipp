// The vector path of the common 2x2, stride-2 max pooling, written once against `Lanes`. Not a
// standalone header: max_pool2d.hpp includes it once per instruction set, inside that set's
// namespace and target region (so every function here is compiled for it), after defining there
// `Lanes` with
//   V, I, width                          float and int32 vectors of `width` lanes;
//   load(p, n)                           the first n floats at p, zeros after them;
//   load_index(p, n)                     `width` bytes at p as int32 lanes (the first n matter);
//   load_pairs(p, n, even, odd)          the even and the odd floats of p[0, 2n), zeros past n;
//   store(p, n, v)                       the first n lanes to p;
//   store_index(p, n, i)                 the first n lanes (each 0..3) to p as bytes;
//   store_pairs(p, n, even, odd)         p[2l] = even[l] and p[2l + 1] = odd[l] for l < n;
//   greater(a, b), equal(i, j)           lane masks of a > b (false where either is NaN), i == j;
//   select(m, a, b), select_index(m, i, j)   a (i) where m, b (j) elsewhere;
//   zero_unless(m, a)                    a where m, +0 elsewhere;
//   relu(a)                              exactly ReLU's a <= 0 ? +0 : a (NaN stays NaN);
//   set1(x), add(a, b), mul(a, b), iota2() (0, 2, 4, ...), set1_index(k).
// It defines MaxPool2x2<C, H, W, OH, OW> for C x H x W inputs and OH x OW outputs. The windows are
// disjoint, so the outputs of one output row come from consecutive floats of two input rows,
// split into even and odd columns; `width` outputs at a time. Each window's winner is recorded as
// its place in the window, 0..3 in row-major order, one byte (MaxPool2D's Winner).

template <std::size_t C, std::size_t H, std::size_t W, std::size_t OH, std::size_t OW>
struct MaxPool2x2 {
    static constexpr std::size_t in_size = C * H * W, out_size = C * OH * OW;
    static constexpr std::size_t lanes = Lanes::width;
    using V = typename Lanes::V;
    using I = typename Lanes::I;

    /// y = max over each window (ReLU of it with Relu: the winner stays the window's raw maximum,
    /// see MaxPool2D's FuseRelu); argmax holds out_size winners' places per row.
    template <bool Relu>
    static void forward(ConstMatrix x, Matrix y, std::uint8_t* argmax) noexcept {
        for (std::size_t r = 0; r < x.rows; ++r) {
            const float* xr = x.row(r);
            float* yr = y.row(r);
            std::uint8_t* ar = argmax + r * out_size;
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t oh = 0; oh < OH; ++oh) {
                    const std::size_t top_row = (c * H + 2 * oh) * W;
                    const std::size_t o_row = (c * OH + oh) * OW;
                    for (std::size_t ow = 0; ow < OW; ow += lanes) {
                        const std::size_t n = std::min(lanes, OW - ow);
                        // Only the 2n inputs the windows cover are read (an odd width's last
                        // column is not).
                        V a_even, a_odd, b_even, b_odd;
                        Lanes::load_pairs(xr + top_row + 2 * ow, n, a_even, a_odd);
                        Lanes::load_pairs(xr + top_row + W + 2 * ow, n, b_even, b_odd);
                        // Window order (0,0), (0,1), (1,0), (1,1) with a strict >, as the general
                        // loop: the first maximum wins ties, and NaN never replaces a value.
                        V m = a_even;
                        I best = Lanes::set1_index(0);
                        const auto take = [&](V v, std::size_t place) {
                            const auto gt = Lanes::greater(v, m);
                            m = Lanes::select(gt, v, m);
                            best = Lanes::select_index(gt, Lanes::set1_index(place), best);
                        };
                        take(a_odd, 1);
                        take(b_even, 2);
                        take(b_odd, 3);
                        if constexpr (Relu) m = Lanes::relu(m);
                        Lanes::store(yr + o_row + ow, n, m);
                        Lanes::store_index(ar + o_row + ow, n, best);
                    }
                }
        }
    }

    /// dx = dy routed to each window's winner (the other three inputs get 0); with Relu, dy is
    /// first multiplied by ReLU's derivative at this layer's output y, as the ReLU layer does.
    template <bool Relu>
    static void backward(ConstMatrix y, ConstMatrix dy, Matrix dx, const std::uint8_t* argmax) noexcept {
        // Every covered input is written (its gradient or zero), so only an odd border needs
        // clearing beforehand.
        constexpr bool border = H % 2 != 0 || W % 2 != 0;
        const V zero = Lanes::set1(0.0f), unit = Lanes::set1(1.0f);
        for (std::size_t r = 0; r < dy.rows; ++r) {
            float* d = dx.row(r);
            const float* g = dy.row(r);
            const float* yr = Relu ? y.row(r) : nullptr;
            const std::uint8_t* ar = argmax + r * out_size;
            if constexpr (border) std::fill_n(d, in_size, 0.0f);
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t oh = 0; oh < OH; ++oh) {
                    const std::size_t top_row = (c * H + 2 * oh) * W;
                    const std::size_t o_row = (c * OH + oh) * OW;
                    for (std::size_t ow = 0; ow < OW; ow += lanes) {
                        const std::size_t n = std::min(lanes, OW - ow);
                        V gv = Lanes::load(g + o_row + ow, n);
                        if constexpr (Relu) // dy * (y > 0 ? 1 : 0)
                            gv = Lanes::mul(
                                gv, Lanes::zero_unless(Lanes::greater(Lanes::load(yr + o_row + ow, n), zero),
                                                       unit));
                        // The portable loop adds the gradient to a cleared input gradient: 0 + g
                        // turns -0 into +0 (a negative dy where ReLU is off), here too.
                        gv = Lanes::add(gv, zero);
                        // The winner's place in its window: 0, 1 (top row), 2, 3 (bottom row).
                        const I at = Lanes::load_index(ar + o_row + ow, n);
                        const auto to = [&](std::size_t place) {
                            return Lanes::zero_unless(Lanes::equal(at, Lanes::set1_index(place)), gv);
                        };
                        Lanes::store_pairs(d + top_row + 2 * ow, n, to(0), to(1));
                        Lanes::store_pairs(d + top_row + W + 2 * ow, n, to(2), to(3));
                    }
                }
        }
    }
};
