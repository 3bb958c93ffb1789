// Figures of experiment curves, rendered by gnuplot (run as a subprocess).
// Each figure is described as panels of line series over CSV files; the
// CLI writes DIR/NAME.gp (kept, so a user can restyle and rerun it) and
// gnuplot renders DIR/NAME.png and DIR/NAME.svg from it.
#ifndef SATLAB_CLIENT_CLI_FIGURES_H_
#define SATLAB_CLIENT_CLI_FIGURES_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace satlab::cli {

// One line: `using` is a gnuplot using-spec over `data` (a CSV file name
// relative to the output directory), e.g. "3:($1==0 ? $5 : 1/0)".
struct Series {
  std::string data;
  std::string using_spec;
  std::string title;
  // Extra style, e.g. "dashtype 2" or "linecolor rgb '#d62728'".
  std::string style;
  // gnuplot "with" clause.
  std::string with = "lines";
};

struct Panel {
  std::string title;
  std::string xlabel;
  std::string ylabel;
  bool log_y = false;
  // Raw gnuplot commands run before the plot (ranges, labels, key position).
  std::string extra;
  std::vector<Series> series;
};

struct Figure {
  // File stem: NAME.gp, NAME.png, NAME.svg.
  std::string name;
  // Title over all panels (multiplot) or of the single panel.
  std::string title;
  std::vector<Panel> panels;
  // Panels per row.
  int columns = 1;
  // Pixel size of the PNG (the SVG has the same size).
  int width = 960;
  int height = 600;
};

// The gnuplot script rendering `figure` to NAME.png and NAME.svg.
std::string GnuplotScript(const Figure& figure);

// True when a `gnuplot` executable is on PATH.
bool GnuplotAvailable();

// Writes DIR/NAME.gp and runs gnuplot in `dir`. INTERNAL with gnuplot's
// exit code when it fails (its messages go to stderr).
absl::Status RenderFigure(const Figure& figure, const std::string& dir);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_FIGURES_H_
