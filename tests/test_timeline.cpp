// The per-phase timeline: Serial and OpenMP trainers record every worker's phases and the
// master's, the Chrome trace it writes is valid JSON with the expected events, and a full
// buffer counts dropped events instead of growing.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <pardl/metrics/timeline.hpp>
#include <pardl/pardl.hpp>
#include <pardl/policies/openmp.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace pardl;
using nlohmann::json;

namespace {

using SmallMlp = Sequential<Input<12>, Dense<16>, Tanh, Dense<9>, ReLU, Dense<4>>;

template <class Policy>
void train(Timeline& timeline, std::size_t threads, std::size_t steps) {
    const Dataset data = make_blobs(100, 12, 4, 7);
    TrainerOptions o;
    o.batch = 20;
    o.threads = threads;
    o.log = false;
    o.timeline = &timeline;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Policy> trainer(SGD({.lr = 0.05f}), o);
    BatchLoader loader(data, o.batch, o.seed);
    loader.start_epoch(1);
    for (std::size_t s = 0; s < steps; ++s)
        trainer.step(data, loader.batch_indices(s % loader.batches_per_epoch()));
}

json trace_of(const Timeline& t, int pid = 0) {
    std::ostringstream os;
    t.write_chrome_trace(os, pid);
    return json::parse(os.str()); // throws (and fails the test) on invalid JSON
}

/// The checks every trace of `steps` steps by `workers` workers must pass.
void check_trace(const json& trace, std::size_t workers, std::size_t steps) {
    REQUIRE(trace.contains("traceEvents"));
    REQUIRE(trace["traceEvents"].is_array());
    CHECK(trace["displayTimeUnit"] == "ms");
    CHECK(trace["otherData"]["dropped"] == 0);
    const std::size_t master = workers;
    std::map<std::size_t, std::vector<json>> by_tid;
    std::set<std::string> names, thread_names;
    std::map<std::pair<std::string, std::size_t>, std::size_t> count; // (name, tid) -> events
    for (const json& e : trace["traceEvents"]) {
        if (e["ph"] == "M") {
            if (e["name"] == "thread_name") thread_names.insert(e["args"]["name"].get<std::string>());
            if (e["name"] == "process_name") CHECK(e["args"]["name"] == "rank 0");
            continue;
        }
        REQUIRE(e["ph"] == "X");
        CHECK(e["cat"] == "step");
        CHECK(e["pid"] == 0);
        CHECK(e["ts"].get<double>() >= 0);
        CHECK(e["dur"].get<double>() >= 0);
        const auto tid = e["tid"].get<std::size_t>();
        CHECK(tid <= master);
        names.insert(e["name"].get<std::string>());
        ++count[{e["name"].get<std::string>(), tid}];
        by_tid[tid].push_back(e);
    }
    CHECK(thread_names.count("master") == 1);
    for (std::size_t w = 0; w < workers; ++w) {
        INFO("worker " << w);
        CHECK(thread_names.count("worker " + std::to_string(w)) == 1);
        // Every worker records its own phases, once per step.
        for (const char* phase : {"data", "forward", "backward"}) CHECK(count[{phase, w}] == steps);
    }
    // One process: the update runs fused with the workers' sum, so the master records them as one.
    CHECK(count[{"reduce_workers+update", master}] == steps);
    CHECK(count[{"step", master}] == steps);
    for (const char* phase : {"data", "forward", "backward"}) CHECK(names.count(phase) == 1);

    // A worker's events follow each other without overlap: data, forward, backward, data, ...
    const std::vector<std::string> order{"data", "forward", "backward"};
    for (std::size_t w = 0; w < workers; ++w) {
        const std::vector<json>& ev = by_tid[w];
        REQUIRE(ev.size() == 3 * steps);
        for (std::size_t i = 0; i < ev.size(); ++i) {
            CHECK(ev[i]["name"] == order[i % 3]);
            if (i > 0) {
                const double prev_end = ev[i - 1]["ts"].get<double>() + ev[i - 1]["dur"].get<double>();
                CHECK(ev[i]["ts"].get<double>() >= prev_end - 1e-3); // printed to the nanosecond
            }
        }
    }
    // Every worker event of a step lies inside that step's "step" event.
    std::vector<json> step_events;
    for (const json& e : by_tid[master])
        if (e["name"] == "step") step_events.push_back(e);
    REQUIRE(step_events.size() == steps);
    for (std::size_t w = 0; w < workers; ++w)
        for (std::size_t i = 0; i < by_tid[w].size(); ++i) {
            const json& e = by_tid[w][i];
            const json& s = step_events[i / 3];
            CHECK(e["ts"].get<double>() >= s["ts"].get<double>() - 1e-3);
            CHECK(e["ts"].get<double>() + e["dur"].get<double>() <=
                  s["ts"].get<double>() + s["dur"].get<double>() + 1e-3);
        }
}

} // namespace

TEST_CASE("A serial trainer records its phases in the timeline", "[timeline]") {
    Timeline timeline(1);
    train<Serial>(timeline, 1, 4);
    CHECK(timeline.size() == 4 * (3 + 2));
    CHECK(timeline.dropped() == 0);
    check_trace(trace_of(timeline), 1, 4);
}

TEST_CASE("An OpenMP trainer records every worker's phases", "[timeline][openmp]") {
    Timeline timeline(2);
    train<OpenMP>(timeline, 2, 5);
    CHECK(timeline.events(0).size() == 15);
    CHECK(timeline.events(1).size() == 15);
    check_trace(trace_of(timeline), 2, 5);
}

TEST_CASE("The trainer refuses a timeline with too few worker lanes", "[timeline][openmp]") {
    Timeline timeline(1);
    TrainerOptions o;
    o.threads = 2;
    o.log = false;
    o.timeline = &timeline;
    using T = Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP>;
    CHECK_THROWS_AS(T(SGD({.lr = 0.05f}), o), ConfigError);
}

TEST_CASE("A full timeline counts dropped events and stays valid", "[timeline]") {
    Timeline timeline(1, 2); // two events per lane
    train<Serial>(timeline, 1, 3);
    CHECK(timeline.events(0).size() == 2);
    CHECK(timeline.events(timeline.master()).size() == 2);
    CHECK(timeline.dropped() == (9 - 2) + (6 - 2));
    const json trace = trace_of(timeline);
    CHECK(trace["otherData"]["dropped"] == 11);
    std::size_t complete = 0;
    for (const json& e : trace["traceEvents"]) complete += e["ph"] == "X";
    CHECK(complete == 4);
    timeline.clear();
    CHECK(timeline.size() == 0);
    CHECK(timeline.dropped() == 0);
}

TEST_CASE("Timeline records by hand and escapes names", "[timeline]") {
    Timeline t(2, 8);
    const auto t0 = t.origin();
    t.record(1, Phase::forward, t0 + std::chrono::microseconds(10), t0 + std::chrono::microseconds(25));
    t.record(t.master(), "odd \"name\"\\", t0, t0 + std::chrono::microseconds(3));
    t.record(7, "no such lane", t0, t0); // ignored
    CHECK(t.size() == 2);
    const json trace = trace_of(t, 3);
    bool forward = false, odd = false;
    for (const json& e : trace["traceEvents"]) {
        if (e["ph"] != "X") continue;
        CHECK(e["pid"] == 3);
        if (e["name"] == "forward") {
            forward = true;
            CHECK(e["tid"] == 1);
            CHECK(e["ts"].get<double>() == Approx(10.0));
            CHECK(e["dur"].get<double>() == Approx(15.0));
        }
        if (e["name"] == "odd \"name\"\\") {
            odd = true;
            CHECK(e["tid"] == 2);
        }
    }
    CHECK(forward);
    CHECK(odd);
}

TEST_CASE("write_timeline with one process writes one valid file and nothing else", "[timeline]") {
    Timeline timeline(1);
    train<Serial>(timeline, 1, 2);
    const auto dir =
        std::filesystem::temp_directory_path() / ("pardl_timeline_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto file = dir / "trace.json";
    LocalComm comm;
    write_timeline(timeline, comm, file);
    std::ifstream in(file);
    const json trace = json::parse(in);
    check_trace(trace, 1, 2);
    CHECK(trace["otherData"]["ranks"] == 1);
    std::size_t others = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) others += entry.path() != file;
    CHECK(others == 0);
    std::filesystem::remove_all(dir);
    // A device is not replaced (the atomic write's rename would delete it).
    CHECK_THROWS_WITH(write_timeline(timeline, comm, "/dev/null"),
                      Catch::Contains("cannot write timeline /dev/null: is not a regular file"));
    CHECK(std::filesystem::is_character_file("/dev/null"));
}
