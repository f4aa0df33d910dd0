// OptimizerChoice<SGD, Adam>: one optimizer type standing for several, the one that works chosen
// at run time (from a command-line flag, say). A Trainer is compiled once per optimizer type, and
// that instantiation is most of a training program's compile time: a program whose user picks one
// of N optimizers compiles N trainers with N types, one with this. The chosen optimizer does the
// arithmetic, so a run gives the same bits as with its own type; each call costs one branch on
// which one it is, and the trainer calls once per slice of parameters, not per element.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "pardl/optimizers/optimizer.hpp"

namespace pardl {

namespace detail {
template <class T, class... Others>
inline constexpr bool named_once = (std::is_same_v<T, Others> + ... + 0) == 1;
} // namespace detail

template <Optimizer... Choices>
class OptimizerChoice {
    static_assert(sizeof...(Choices) >= 1, "OptimizerChoice: name at least one optimizer type");
    static_assert((detail::named_once<Choices, Choices...> && ...),
                  "OptimizerChoice: each optimizer type may be named once");

public:
    /// The chosen optimizer, one of Choices.
    template <class O>
    requires(std::same_as<std::remove_cvref_t<O>, Choices> || ...) OptimizerChoice(O&& chosen)
        : chosen_(std::in_place_type<std::remove_cvref_t<O>>, std::forward<O>(chosen)) {}

    void reset(std::size_t n) {
        visit([&](auto& o) { o.reset(n); });
    }
    void begin_step() {
        visit([](auto& o) { o.begin_step(); });
    }
    void update(std::span<float> p, std::span<const float> g, std::size_t offset) {
        visit([&](auto& o) { o.update(p, g, offset); });
    }
    /// ScalesGradient, where every choice does.
    void update(std::span<float> p, std::span<const float> g, std::size_t offset,
                float grad_scale) requires(ScalesGradient<Choices>&&...) {
        visit([&](auto& o) { o.update(p, g, offset, grad_scale); });
    }
    /// ClampsGradient, where every choice does.
    void update(std::span<float> p, std::span<const float> g, std::size_t offset, float grad_scale,
                float limit) requires(ClampsGradient<Choices>&&...) {
        visit([&](auto& o) { o.update(p, g, offset, grad_scale, limit); });
    }

    float learning_rate() const {
        return visit([](const auto& o) { return static_cast<float>(o.learning_rate()); });
    }
    void set_learning_rate(float lr) {
        visit([&](auto& o) { o.set_learning_rate(lr); });
    }
    /// The chosen optimizer's name: a checkpoint written through the choice is the chosen
    /// optimizer's own, and reads back into it or into a choice of it.
    std::string name() const {
        return visit([](const auto& o) { return std::string(o.name()); });
    }

    /// SavesState, where every choice does.
    std::vector<std::span<float>> state_buffers() requires(SavesState<Choices>&&...) {
        return visit([](auto& o) { return std::vector<std::span<float>>(o.state_buffers()); });
    }
    std::uint64_t steps() const requires(SavesState<Choices>&&...) {
        return visit([](const auto& o) { return static_cast<std::uint64_t>(o.steps()); });
    }
    void set_steps(std::uint64_t s) requires(SavesState<Choices>&&...) {
        visit([&](auto& o) { o.set_steps(s); });
    }
    /// OptimizerSettings, where every choice does.
    std::vector<std::pair<std::string, std::string>> settings() const
        requires(OptimizerSettings<Choices>&&...) {
        return visit(
            [](const auto& o) { return std::vector<std::pair<std::string, std::string>>(o.settings()); });
    }

    /// The chosen optimizer if it is an O, else nullptr.
    template <class O>
    O* get_if() noexcept {
        return std::get_if<O>(&chosen_);
    }
    template <class O>
    const O* get_if() const noexcept {
        return std::get_if<O>(&chosen_);
    }

private:
    template <class F>
    decltype(auto) visit(F&& f) {
        return std::visit(std::forward<F>(f), chosen_);
    }
    template <class F>
    decltype(auto) visit(F&& f) const {
        return std::visit(std::forward<F>(f), chosen_);
    }

    std::variant<Choices...> chosen_;
};

} // namespace pardl
