// libedit's readline interface (Debian's libedit-dev), for `pdb shell`'s line editing. Its
// state is in C globals; these functions set and read them, so Swift never touches a global.
#include <stdio.h>
#include <editline/readline.h>

static inline void pdb_edit_setup(const char *name, rl_completion_func_t *complete) {
    rl_readline_name = name;
    rl_attempted_completion_function = complete;
}

// Only the shell's own matches: no fall-back to file names.
static inline void pdb_edit_own_matches_only(void) { rl_attempted_completion_over = 1; }

static inline const char *pdb_edit_line(void) { return rl_line_buffer; }
