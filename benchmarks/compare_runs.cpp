// pardl_compare: one table comparing example run records (--json files) against the Serial run:
// seconds per epoch, speedup, parallel efficiency, final loss and accuracy, accuracy drift.
//   pardl_compare [--csv FILE] run1.json run2.json ...
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "pardl/core/atomic_file.hpp"
#include "pardl/data/files.hpp"

namespace {

struct Run {
    std::string file;
    std::string policy;
    std::string model;
    int ranks = 1;
    long threads = 1;
    std::size_t epochs = 0;
    std::size_t train_images = 0;
    double mean_epoch = 0;
    double best_epoch = 0;
    double samples_per_second = 0;
    double final_train_loss = 0;
    double final_test_accuracy = 0;
    std::string checksum;
};

double last_of(const nlohmann::json& j, const char* key, const std::string& file) {
    if (!j.contains(key) || !j[key].is_array() || j[key].empty())
        throw std::runtime_error(file + ": '" + key + "' is missing or empty");
    return j[key].back().get<double>();
}

Run read_run(const std::string& file) {
    // A regular file only, checked by name and again on the file opened: a FIFO would wait for a
    // writer for ever, and a folder or device is no record (the words of the data readers').
    pardl::detail::require_regular_file(file, "run record");
    std::string why;
    const pardl::detail::FileHandle handle = pardl::detail::open_regular_file(file, why);
    if (!handle) throw std::runtime_error("run record '" + file + "': unreadable: " + why);
    std::string text;
    char chunk[65536];
    for (std::size_t got; (got = std::fread(chunk, 1, sizeof chunk, handle.get())) > 0;)
        text.append(chunk, got);
    if (std::ferror(handle.get())) throw std::runtime_error("run record '" + file + "': read error");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(file + ": not valid JSON (" + e.what() + ")");
    }
    Run r;
    r.file = file;
    try {
        r.policy = j.at("policy").get<std::string>();
        r.model = j.value("model", std::string{});
        r.ranks = j.at("ranks").get<int>();
        r.threads = j.at("threads").get<long>();
        r.train_images = j.value("train_images", std::size_t{0});
        r.samples_per_second = j.value("samples_per_second", 0.0);
        r.checksum = j.value("param_checksum", std::string{});
        const auto& secs = j.at("epoch_seconds");
        if (!secs.is_array() || secs.empty()) throw std::runtime_error(file + ": no epochs recorded");
        std::vector<double> s = secs.get<std::vector<double>>();
        // Speedups divide by them, efficiencies by the workers: a hand-edited record must not
        // print nan or inf.
        for (double v : s)
            if (!(std::isfinite(v) && v > 0))
                throw std::runtime_error(file + ": an epoch of " + std::to_string(v) +
                                         " seconds (each must be a positive number)");
        if (r.ranks < 1 || r.threads < 1)
            throw std::runtime_error(file + ": ranks " + std::to_string(r.ranks) + ", threads " +
                                     std::to_string(r.threads) + " (each must be at least 1)");
        r.epochs = s.size();
        double sum = 0;
        for (double v : s) sum += v;
        r.mean_epoch = sum / static_cast<double>(s.size());
        r.best_epoch = *std::min_element(s.begin(), s.end());
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(file + ": not a pardl run record (" + e.what() + ")");
    }
    r.final_train_loss = last_of(j, "train_loss", file);
    r.final_test_accuracy = last_of(j, "test_accuracy", file);
    return r;
}

void usage(std::FILE* out) {
    std::fprintf(out, "usage: pardl_compare [--csv FILE] RUN.json [RUN.json ...]\n"
                      "Compares run records written by the examples' --json flag. The baseline is the\n"
                      "record whose policy is \"serial\" (else the first file).\n");
}

} // namespace

int main(int argc, char** argv) {
    std::string csv;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        } else if (a == "--csv") {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "error: --csv needs a FILE\n");
                return 2;
            }
            csv = argv[++i];
        } else if (a.rfind("--csv=", 0) == 0) {
            csv = a.substr(6);
        } else if (a.size() > 1 && a[0] == '-') {
            std::fprintf(stderr, "error: unknown option '%s'\n", a.c_str());
            usage(stderr);
            return 2;
        } else {
            files.push_back(a);
        }
    }
    if (files.empty()) {
        usage(stderr);
        return 2;
    }

    // The table is written over FILE: FILE must not be a record it reads, nor anything the atomic
    // write would replace (a link, a folder, a device, a FIFO).
    if (!csv.empty()) {
        std::string problem = pardl::atomic_write_problem(csv);
        for (const auto& f : files)
            if (problem.empty() && pardl::detail::same_file(csv, f))
                problem = "it is " + f + ", a record this comparison reads";
        if (!problem.empty()) {
            std::fprintf(stderr, "error: --csv %s: %s\n", csv.c_str(), problem.c_str());
            return 2;
        }
    }

    std::vector<Run> runs;
    try {
        for (const auto& f : files) runs.push_back(read_run(f));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    const auto serial =
        std::find_if(runs.begin(), runs.end(), [](const Run& r) { return r.policy == "serial"; });
    const Run& base = serial != runs.end() ? *serial : runs.front();

    struct Row {
        std::string policy, workers, mean, best, speedup, efficiency, loss, acc, dacc;
    };
    std::vector<Row> rows;
    bool mixed = false;
    for (const Run& r : runs) {
        if (r.model != base.model || r.train_images != base.train_images || r.epochs != base.epochs)
            mixed = true;
        char buf[9][64];
        const long workers = static_cast<long>(r.ranks) * r.threads;
        const double speedup = base.mean_epoch / r.mean_epoch;
        std::snprintf(buf[0], 64, "%s", r.policy.c_str());
        std::snprintf(buf[1], 64, "%dx%ld", r.ranks, r.threads);
        std::snprintf(buf[2], 64, "%.3f", r.mean_epoch);
        std::snprintf(buf[3], 64, "%.3f", r.best_epoch);
        std::snprintf(buf[4], 64, "%.2f", speedup);
        std::snprintf(buf[5], 64, "%.0f%%", 100.0 * speedup / static_cast<double>(std::max(1L, workers)));
        std::snprintf(buf[6], 64, "%.4f", r.final_train_loss);
        std::snprintf(buf[7], 64, "%.2f%%", 100.0 * r.final_test_accuracy);
        std::snprintf(buf[8], 64, "%+.2f", 100.0 * (r.final_test_accuracy - base.final_test_accuracy));
        rows.push_back({buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8]});
    }

    const Row head{"policy",     "ranks x thr", "s/epoch",  "best s/epoch", "speedup",
                   "efficiency", "train loss",  "test acc", "dacc (pp)"};
    auto fields = [](const Row& r) {
        return std::vector<std::string>{r.policy,     r.workers, r.mean, r.best, r.speedup,
                                        r.efficiency, r.loss,    r.acc,  r.dacc};
    };
    std::vector<std::size_t> width(9, 0);
    for (const Row& r : rows) {
        const auto f = fields(r);
        for (std::size_t i = 0; i < 9; ++i) width[i] = std::max(width[i], f[i].size());
    }
    const auto h = fields(head);
    for (std::size_t i = 0; i < 9; ++i) width[i] = std::max(width[i], h[i].size());
    auto print_row = [&](const std::vector<std::string>& f) {
        std::string line;
        for (std::size_t i = 0; i < f.size(); ++i) {
            const std::size_t pad = width[i] - f[i].size();
            if (i == 0) // text column: left-aligned; numbers: right-aligned
                line += f[i] + std::string(pad, ' ');
            else
                line += "  " + std::string(pad, ' ') + f[i];
        }
        std::printf("%s\n", line.c_str());
    };

    std::printf("%s, %zu training images, %zu epoch%s; baseline: %s (%s)\n",
                base.model.empty() ? "runs" : base.model.c_str(), base.train_images, base.epochs,
                base.epochs == 1 ? "" : "s", base.policy.c_str(), base.file.c_str());
    print_row(h);
    std::size_t total = 0;
    for (std::size_t w : width) total += w + 2;
    std::printf("%s\n", std::string(total - 2, '-').c_str());
    for (const Row& r : rows) print_row(fields(r));
    std::printf(
        "s/epoch: mean over all epochs; speedup = serial s/epoch / s/epoch; efficiency = speedup / "
        "(ranks x threads);\ndacc: final test accuracy minus the baseline's, in percentage points.\n");
    if (mixed)
        std::printf("note: the records differ in model, training images or epochs: the comparison is not "
                    "like for like.\n");

    if (!csv.empty()) {
        std::ostringstream out;
        out << "file,policy,ranks,threads,epochs,train_images,mean_epoch_s,best_epoch_s,speedup,efficiency,"
               "final_train_loss,final_test_accuracy,delta_accuracy_pp,samples_per_second,param_checksum\n";
        for (const Run& r : runs) {
            const double speedup = base.mean_epoch / r.mean_epoch;
            const double workers = static_cast<double>(std::max(1L, static_cast<long>(r.ranks) * r.threads));
            char line[512];
            std::snprintf(line, sizeof line, "%d,%ld,%zu,%zu,%.6f,%.6f,%.4f,%.4f,%.6f,%.6f,%.4f,%.1f",
                          r.ranks, r.threads, r.epochs, r.train_images, r.mean_epoch, r.best_epoch, speedup,
                          speedup / workers, r.final_train_loss, r.final_test_accuracy,
                          100.0 * (r.final_test_accuracy - base.final_test_accuracy), r.samples_per_second);
            out << '"' << r.file << "\"," << r.policy << ',' << line << ',' << r.checksum << '\n';
        }
        // Atomically, as the examples' records: an earlier table stays whole if this write fails.
        try {
            const std::string table = out.str();
            pardl::write_file_atomically<std::runtime_error>(
                csv, "table", [&](auto&& put) { put(table.data(), table.size()); });
        } catch (const std::exception& e) {
            std::fprintf(stderr, "error: %s\n", e.what());
            return 1;
        }
    }
    return 0;
}
