"""Figures and published-vs-reproduced tables of evaluated runs: `write_report(group, logdir)`.

The modules, in reading order:

  results.py  what the report reads (the sinusoid rows' results files as `Result`s) and the names the
              figures and tables share (rows, labels, the K and steps each figure or table shows)
  tables.py   the sinusoid's App. C Table 2 and its targets, the experiments table, the shared cells
  figures.py  every matplotlib figure: paper Fig. 2, 3, 5 and 6, validation curves, the methods' bars
  groups.py   the groups of `python main.py --report=<group>`: each prints its table and writes its
              figures (GROUPS, write_report)
  readme.py   the README's results section, generated from results/
  speed.py    the README's speed section, generated from the speed comparison's JSON lines

The names that main.py, tools, docs and tests use are re-exported here (`import report;
report.write_report(...)`, `report.readme_section(...)`).
"""

from report.figures import plot_fits, plot_learning_curve, plot_learning_curves
from report.groups import (GROUPS, experiments_report, l2l_report, methods_report, rl_report,
                           sinusoid_report, table1_report, write_report)
from report.readme import NOT_KEPT, README_BEGIN, README_END, readme_report, readme_section
from report.speed import SPEED_BEGIN, SPEED_END, speed_report, speed_section
from report.results import (COLORS, FIG2_SHOTS, FIG3_SHOTS, FIGURES_DIR, LABELS, MAML_ROW, ORACLE_ROW,
                            PAPER_ALPHA_ROW, PLOT_TASK, PRETRAINED_ROW, SINUSOID_SHOTS, SPLIT, SUPPORT_COLOR,
                            TABLE2_ROWS, TABLE2_SHOTS, TARGET_STEP, TARGET_TOLERANCE, Result, Results,
                            eval_command, load_result, load_results)
from report.tables import (curves_text, divergence_lines, experiments_table, method_label, table2_markdown,
                           target_lines)
