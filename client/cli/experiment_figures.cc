#include "client/cli/experiment_figures.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/cli/experiment_report.h"

namespace satlab::cli {
namespace {

// "x:(column 1 == v ? y : undefined)".
std::string Using(int variant, const std::string& x, const std::string& y) {
  return absl::StrCat(x, ":($1==", variant, " ? ", y, " : 1/0)");
}

}  // namespace

std::vector<Figure> CurveFigures(const Plan& plan,
                                 const std::vector<Curve>& curves,
                                 int hidden_layers) {
  const std::string csv = plan.name + ".csv";
  const std::string epoch_label = "epoch (passes over the training data)";
  auto per_variant = [&](const std::string& y) {
    std::vector<Series> series;
    for (const Curve& c : curves) {
      series.push_back({csv, Using(c.variant, "3", y), c.label, "", "lines"});
    }
    return series;
  };
  std::vector<Figure> figures;

  // Learning curves: one panel per run (e.g. per starting point), so each
  // compares its losses from identical parameters.
  const int runs = static_cast<int>(plan.runs.size());
  Figure loss{plan.name + "_loss",
              plan.title + ": learning curves",
              {},
              runs,
              runs > 1 ? 1300 : 960,
              runs > 1 ? 560 : 600};
  for (int r = 0; r < runs; ++r) {
    Panel panel{plan.runs[r].spec.display_name(),
                epoch_label,
                "mean cost per sample (mse: ½(a−y)²; ce: nats)",
                false,
                "set yrange [0:*]",
                {}};
    for (const Curve& c : curves) {
      if (c.run != r) continue;
      panel.series.push_back(
          {csv, Using(c.variant, "3", "$5"), c.label, "", "lines"});
    }
    loss.panels.push_back(panel);
  }
  figures.push_back(loss);

  if (plan.classification) {
    Figure acc{plan.name + "_accuracy", plan.title + ": accuracy", {}, 1};
    acc.panels.push_back({"", epoch_label,
                          "training accuracy (fraction classified correctly)",
                          false, "set yrange [0:1.02]\nset key bottom right",
                          per_variant("$6")});
    figures.push_back(acc);
  }

  Figure att{plan.name + "_attenuation",
             plan.title + ": output attenuation ‖δ‖/‖a−y‖",
             {},
             1};
  att.panels.push_back(
      {"", epoch_label,
       "‖δ‖ / ‖a − y‖ at the output (1 = no attenuation; log scale)", true,
       "set yrange [*:2]\nset key bottom right", per_variant("$7")});
  figures.push_back(att);

  if (plan.plot_output) {
    Figure out{
        plan.name + "_output", plan.title + ": output a (target 0)", {}, 1};
    out.panels.push_back({"", epoch_label, "output activation a = σ(w·1 + b)",
                          false, "set yrange [0:1]",
                          per_variant(absl::StrCat("$", LayerColumn(0, 2)))});
    figures.push_back(out);
  }

  if (hidden_layers > 0) {
    // Per variant: one line per hidden layer.
    auto per_layer = [&](const Curve& c, int field) {
      std::vector<Series> series;
      for (int l = 0; l < hidden_layers; ++l) {
        series.push_back(
            {csv,
             Using(c.variant, "3", absl::StrCat("$", LayerColumn(l, field))),
             absl::StrCat("hidden layer ", l + 1,
                          l + 1 == hidden_layers ? " (top)" : ""),
             "", "lines"});
      }
      return series;
    };
    Figure act{plan.name + "_activations",
               plan.title + ": mean activation per hidden layer",
               {},
               static_cast<int>(std::min<size_t>(curves.size(), 3)),
               std::min<int>(1500, 520 * static_cast<int>(curves.size())),
               520};
    Figure sat{plan.name + "_saturation",
               plan.title + ": mean f′(z) per hidden layer",
               {},
               act.columns,
               act.width,
               520};
    for (const Curve& c : curves) {
      act.panels.push_back({c.label, epoch_label,
                            "mean sigmoid activation a over units and samples",
                            false, "set yrange [0:1]", per_layer(c, 2)});
      sat.panels.push_back(
          {c.label, epoch_label,
           "mean σ′(z) = a(1 − a) (0.25 = unsaturated; → 0 = saturated)", false,
           "set yrange [0:0.26]\nset key bottom left", per_layer(c, 0)});
    }
    figures.push_back(act);
    figures.push_back(sat);
  }
  return figures;
}

Figure FactorFigure() {
  Figure f{"factor",
           "Output gradient δ = ∂C/∂z of a sigmoid unit with target y = 0",
           {},
           1};
  f.panels.push_back(
      {"",
       "output a = σ(z)  (target y = 0: larger a = more wrong)",
       "δ = ∂C/∂z per sample",
       false,
       "set key top left\nset xrange [0:1]\nset yrange [0:1]\n"
       "set label 1 'a=0.6: a(1−a) = 0.24' at 0.6,0.24 point pt 7 offset "
       "1,-1\n"
       "set label 2 'a=0.95: a(1−a) = 0.0475' at 0.95,0.0475 point pt 7 "
       "right offset -1,3",
       {{"factor.csv", "1:4", "cross-entropy: δ = a − y", "", "lines"},
        {"factor.csv", "1:3", "mse: δ = (a − y)·a(1 − a)", "", "lines"},
        {"factor.csv", "1:2", "the factor σ′(z) = a(1 − a)", "dashtype 2",
         "lines"}}});
  return f;
}

}  // namespace satlab::cli
