//! Markdown laid out for a terminal: how `harbor-doctor runbook <id>` shows
//! a runbook to someone on call.
//!
//! The runbooks are written in Markdown for the repository; raw, `##` and
//! backticks get in the way of reading at 3 a.m. This renders them as text:
//! headings stand out (bold and underlined on a terminal, upper case in
//! plain text), paragraphs and list items are wrapped to the width, lists
//! are indented, tables are drawn.
//!
//! What may be copied is never changed: a code block's lines are printed
//! exactly as written, only indented, and never wrapped, however long; an
//! inline code span is never broken across lines (a span wider than the
//! line gets a line of its own). Plain text keeps the backticks around
//! inline code, so that it is clear where a command ends; on a terminal
//! with colour, a colour does that instead.

use console::Style as Ansi;
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use textwrap::core::display_width;

/// How to lay the text out.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Columns to wrap prose at.
    pub width: usize,
    /// Bold, underline and colour as ANSI escapes (a terminal without
    /// NO_COLOR); otherwise plain text.
    pub ansi: bool,
}

/// Narrower than this, indentation would leave no room for the text.
const MIN_TEXT: usize = 20;
/// How far a code block is indented from the text around it.
const CODE_INDENT: &str = "    ";

/// `markdown` laid out as lines of text, each ending with a newline.
pub fn render(markdown: &str, style: &Style) -> String {
    let mut r = Renderer::new(*style);
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        r.event(event);
    }
    r.flush_text();
    let mut out = String::new();
    for line in &r.lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// How one piece of inline text is set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Inline {
    code: bool,
    strong: bool,
    emphasis: bool,
    link: bool,
}

/// What may not be broken across lines: text between spaces, with the
/// pieces glued to it (`` `--ca-cert PATH`), ``).
#[derive(Debug, Default)]
struct Word {
    pieces: Vec<(String, Inline)>,
}

impl Word {
    /// Its columns; plain text adds backticks around code.
    fn width(&self, ansi: bool) -> usize {
        self.pieces
            .iter()
            .map(|(t, inline)| display_width(t) + if inline.code && !ansi { 2 } else { 0 })
            .sum()
    }
}

/// A unit of a paragraph: a word, or a hard line break.
#[derive(Debug)]
enum Token {
    Word(Word),
    Break,
}

/// Something that indents the lines inside it.
#[derive(Debug)]
enum Frame {
    /// A list item: its marker on its first line, as many spaces after.
    Item {
        marker: Option<String>,
        width: usize,
    },
    /// A block quote: its bar on every line.
    Quote,
}

/// A list being rendered: the number of its next item, when ordered.
#[derive(Debug)]
struct List {
    next: Option<u64>,
}

/// A table being collected, to draw once it is whole.
#[derive(Debug, Default)]
struct TableRows {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
}

struct Renderer {
    style: Style,
    lines: Vec<String>,
    frames: Vec<Frame>,
    lists: Vec<List>,
    /// The paragraph, heading or list item text being collected.
    tokens: Vec<Token>,
    /// Whether the next text continues the last word (no space between).
    glue: bool,
    inline: Inline,
    heading: Option<HeadingLevel>,
    /// The link being collected, to name its address after its text.
    link: Option<String>,
    link_text: String,
    /// The code block being collected.
    code: Option<String>,
    table: Option<TableRows>,
    /// A blank line goes before the next block.
    gap: bool,
}

impl Renderer {
    fn new(style: Style) -> Renderer {
        Renderer {
            style,
            lines: Vec::new(),
            frames: Vec::new(),
            lists: Vec::new(),
            tokens: Vec::new(),
            glue: false,
            inline: Inline::default(),
            heading: None,
            link: None,
            link_text: String::new(),
            code: None,
            table: None,
            gap: false,
        }
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some(code) = &mut self.code {
            match event {
                Event::Text(t) => code.push_str(&t),
                Event::End(TagEnd::CodeBlock) => self.end_code_block(),
                _ => {}
            }
            return;
        }
        if self.table.is_some() {
            self.table_event(event);
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.text(&t, self.inline),
            Event::Code(t) => {
                let inline = Inline {
                    code: true,
                    ..self.inline
                };
                self.piece(&t, inline);
            }
            // Raw HTML in a runbook is meant as text (`<holder>`).
            Event::Html(t) | Event::InlineHtml(t) => self.text(&t, self.inline),
            Event::SoftBreak => self.glue = false,
            Event::HardBreak => {
                self.tokens.push(Token::Break);
                self.glue = false;
            }
            Event::Rule => {
                self.flush_text();
                self.block_start();
                let width = self.text_width();
                let rule = if self.style.ansi { "─" } else { "-" }.repeat(width);
                self.emit(rule);
                self.gap = true;
            }
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                self.flush_text();
                self.block_start();
            }
            Tag::Heading { level, .. } => {
                self.flush_text();
                self.gap = true;
                self.block_start();
                self.heading = Some(level);
            }
            Tag::BlockQuote(_) => {
                self.flush_text();
                self.block_start();
                self.frames.push(Frame::Quote);
            }
            Tag::CodeBlock(_) => {
                self.flush_text();
                // Set apart, so that it is plain what to copy.
                self.gap = true;
                self.block_start();
                self.code = Some(String::new());
            }
            Tag::List(first) => {
                self.flush_text();
                if self.lists.is_empty() {
                    self.block_start();
                }
                self.lists.push(List { next: first });
            }
            Tag::Item => {
                self.flush_text();
                self.block_start();
                let marker = match self.lists.last_mut() {
                    Some(List { next: Some(n) }) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "- ".to_string(),
                };
                let width = display_width(&marker).max(2);
                self.frames.push(Frame::Item {
                    marker: Some(marker),
                    width,
                });
            }
            Tag::Table(_) => {
                self.flush_text();
                self.gap = true;
                self.block_start();
                self.table = Some(TableRows::default());
            }
            Tag::Emphasis => self.inline.emphasis = true,
            Tag::Strong => self.inline.strong = true,
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                self.inline.link = true;
                self.link = Some(dest_url.to_string());
                self.link_text.clear();
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush_text();
                self.gap = true;
            }
            TagEnd::Heading(_) => {
                self.flush_text();
                self.heading = None;
                self.gap = true;
            }
            TagEnd::BlockQuote(_) => {
                self.flush_text();
                self.frames.pop();
                self.gap = true;
            }
            TagEnd::List(_) => {
                self.flush_text();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.gap = true;
                }
            }
            TagEnd::Item => {
                self.flush_text();
                self.frames.pop();
            }
            TagEnd::Emphasis => self.inline.emphasis = false,
            TagEnd::Strong => self.inline.strong = false,
            TagEnd::Link | TagEnd::Image => {
                self.inline.link = false;
                if let Some(url) = self.link.take() {
                    // The address is worth showing only when the text is
                    // not already it.
                    if !url.is_empty() && url != self.link_text && !url.starts_with('#') {
                        self.glue = false;
                        self.piece(&format!("({url})"), Inline::default());
                    }
                }
            }
            _ => {}
        }
    }

    fn table_event(&mut self, event: Event<'_>) {
        let Some(t) = &mut self.table else { return };
        match event {
            Event::Text(s) | Event::Html(s) | Event::InlineHtml(s) => t.cell.push_str(&s),
            // A table is drawn without styling, so code keeps its backticks.
            Event::Code(s) => {
                t.cell.push('`');
                t.cell.push_str(&s);
                t.cell.push('`');
            }
            Event::SoftBreak | Event::HardBreak => t.cell.push(' '),
            Event::End(TagEnd::TableCell) => {
                let cell = std::mem::take(&mut t.cell);
                t.row.push(cell.trim().to_string());
            }
            Event::End(TagEnd::TableHead) => t.header = std::mem::take(&mut t.row),
            Event::End(TagEnd::TableRow) => {
                let row = std::mem::take(&mut t.row);
                t.rows.push(row);
            }
            Event::End(TagEnd::Table) => self.end_table(),
            _ => {}
        }
    }

    fn end_table(&mut self) {
        let Some(t) = self.table.take() else { return };
        let mut table = comfy_table::Table::new();
        table.load_preset(if self.style.ansi {
            comfy_table::presets::UTF8_FULL_CONDENSED
        } else {
            comfy_table::presets::ASCII_FULL_CONDENSED
        });
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        table.force_no_tty();
        table.set_width(self.text_width().min(u16::MAX as usize) as u16);
        if !t.header.is_empty() {
            table.set_header(t.header);
        }
        for row in t.rows {
            table.add_row(row);
        }
        for line in table.to_string().lines() {
            self.emit(line.to_string());
        }
        self.gap = true;
    }

    fn end_code_block(&mut self) {
        let Some(code) = self.code.take() else { return };
        for line in code.strip_suffix('\n').unwrap_or(&code).split('\n') {
            let line = if line.is_empty() {
                String::new()
            } else {
                format!("{CODE_INDENT}{line}")
            };
            self.emit(line);
        }
        self.gap = true;
    }

    /// Text that may break at its spaces.
    fn text(&mut self, text: &str, inline: Inline) {
        if self.link.is_some() {
            self.link_text.push_str(text);
        }
        let mut first = true;
        for part in text.split(' ') {
            if !first {
                self.glue = false;
            }
            first = false;
            if !part.is_empty() {
                self.piece(part, inline);
            }
        }
    }

    /// Text that is never broken: a word, or a whole code span.
    fn piece(&mut self, text: &str, inline: Inline) {
        if inline.code && self.link.is_some() {
            self.link_text.push_str(text);
        }
        let text = match self.heading {
            // Upper case marks a heading in plain text; code stays as written.
            Some(_) if !self.style.ansi && !inline.code => text.to_uppercase(),
            _ => text.to_string(),
        };
        match self.tokens.last_mut() {
            Some(Token::Word(w)) if self.glue => w.pieces.push((text, inline)),
            _ => self.tokens.push(Token::Word(Word {
                pieces: vec![(text, inline)],
            })),
        }
        self.glue = true;
    }

    /// Starts a block: the blank line that separates it from the one before.
    fn block_start(&mut self) {
        if self.gap && self.lines.last().is_some_and(|l| !l.trim().is_empty()) {
            let prefix = self.prefix(false);
            self.lines.push(prefix.trim_end().to_string());
        }
        self.gap = false;
    }

    /// The columns left for text inside the current frames.
    fn text_width(&self) -> usize {
        let indent: usize = self
            .frames
            .iter()
            .map(|f| match f {
                Frame::Item { width, .. } => *width,
                Frame::Quote => 2,
            })
            .sum();
        self.style.width.saturating_sub(indent).max(MIN_TEXT)
    }

    /// The indentation of the next line; `take_marker`: it is a line of
    /// content, which shows a list item's marker the first time.
    fn prefix(&mut self, take_marker: bool) -> String {
        let bar = if self.style.ansi { "│ " } else { "| " };
        let mut prefix = String::new();
        for f in &mut self.frames {
            match f {
                Frame::Quote => prefix.push_str(bar),
                Frame::Item { marker, width } => match marker.take_if(|_| take_marker) {
                    Some(m) => prefix.push_str(&format!("{m:<width$}", width = *width)),
                    None => prefix.push_str(&" ".repeat(*width)),
                },
            }
        }
        prefix
    }

    fn emit(&mut self, line: String) {
        let prefix = self.prefix(true);
        if line.is_empty() {
            self.lines.push(prefix.trim_end().to_string());
        } else {
            self.lines.push(format!("{prefix}{line}"));
        }
    }

    /// Lays out the collected paragraph, heading or item text.
    fn flush_text(&mut self) {
        self.glue = false;
        if self.tokens.is_empty() {
            return;
        }
        let tokens = std::mem::take(&mut self.tokens);
        let width = self.text_width();
        let mut lines: Vec<Vec<Word>> = vec![Vec::new()];
        let mut used = 0;
        for token in tokens {
            match token {
                Token::Break => {
                    lines.push(Vec::new());
                    used = 0;
                }
                Token::Word(w) => {
                    let current = lines.last_mut().expect("one line at least");
                    let w_width = w.width(self.style.ansi);
                    if !current.is_empty() && used + 1 + w_width > width {
                        lines.push(vec![w]);
                        used = w_width;
                    } else {
                        used += w_width + usize::from(!current.is_empty());
                        current.push(w);
                    }
                }
            }
        }
        let heading = self.heading;
        let mut widest = 0;
        for words in lines {
            let text: Vec<String> = words.iter().map(|w| self.set(w, heading)).collect();
            let text = text.join(" ");
            widest = widest.max(display_width(&text));
            self.emit(text);
        }
        // In plain text, the top two levels are also underlined.
        if !self.style.ansi {
            match heading {
                Some(HeadingLevel::H1) => self.emit("=".repeat(widest)),
                Some(HeadingLevel::H2) => self.emit("-".repeat(widest)),
                _ => {}
            }
        }
    }

    /// A word as it is shown: plain text, or with its pieces styled.
    fn set(&self, word: &Word, heading: Option<HeadingLevel>) -> String {
        let mut out = String::new();
        for (text, inline) in &word.pieces {
            if !self.style.ansi {
                if inline.code {
                    out.push('`');
                    out.push_str(text);
                    out.push('`');
                } else {
                    out.push_str(text);
                }
                continue;
            }
            let mut s = Ansi::new().force_styling(true);
            match heading {
                Some(HeadingLevel::H1) | Some(HeadingLevel::H2) => s = s.bold().underlined(),
                Some(_) => s = s.bold(),
                None => {}
            }
            if inline.code {
                s = s.cyan();
            }
            if inline.strong {
                s = s.bold();
            }
            if inline.emphasis {
                s = s.italic();
            }
            if inline.link {
                s = s.underlined();
            }
            out.push_str(&s.apply_to(text).to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(md: &str, width: usize) -> String {
        render(md, &Style { width, ansi: false })
    }

    #[test]
    fn headings_lists_and_code_as_plain_text() {
        let md = "# Title with `code`\n\nSome *words* and **more**.\n\n## Cause\n\n\
                  - one\n- two `x y`\n  - nested\n\n1. first\n2. second\n\n```\n  $ cmd  --flag\n```\n";
        let out = plain(md, 60);
        assert_eq!(
            out,
            "TITLE WITH `code`\n=================\n\nSome words and more.\n\nCAUSE\n-----\n\n\
             - one\n- two `x y`\n  - nested\n\n1. first\n2. second\n\n      $ cmd  --flag\n"
        );
    }

    #[test]
    fn paragraphs_wrap_but_code_spans_and_blocks_do_not() {
        let md = "- alpha beta gamma delta `a long command that does not fit` epsilon\n\n\
                  ```\nthis code line is far longer than the width and stays whole\n```\n";
        let out = plain(md, 22);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "- alpha beta gamma");
        assert_eq!(lines[1], "  delta");
        assert_eq!(lines[2], "  `a long command that does not fit`");
        assert_eq!(lines[3], "  epsilon");
        assert_eq!(
            lines[5],
            "    this code line is far longer than the width and stays whole"
        );
    }

    #[test]
    fn ansi_styles_each_word_and_drops_the_markup() {
        let out = render(
            "## Cause\n\nrun `ls -l` now\n",
            &Style {
                width: 80,
                ansi: true,
            },
        );
        assert!(out.contains('\u{1b}'), "{out:?}");
        assert!(!out.contains("##") && !out.contains('`'), "{out:?}");
        assert_eq!(console::strip_ansi_codes(&out), "Cause\n\nrun ls -l now\n");
    }

    #[test]
    fn tables_fit_the_width() {
        let md = "| where | what |\n|---|---|\n| Harbor | a project and robots, with a long description that must wrap |\n";
        let out = plain(md, 40);
        assert!(out.lines().all(|l| display_width(l) <= 40), "{out}");
        assert!(out.contains("where") && out.contains("Harbor"), "{out}");
        assert!(!out.contains("|---"), "{out}");
    }

    #[test]
    fn links_name_their_address() {
        let out = plain(
            "see [the docs](https://example.com/x) and <https://a.example>\n",
            80,
        );
        assert_eq!(
            out,
            "see the docs (https://example.com/x) and https://a.example\n"
        );
    }
}
