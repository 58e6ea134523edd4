// MathJax 3 configuration (loaded before assets/mathjax/tex-svg-full.js, both at the end of <body>).
// Pages written in Markdown: pymdownx.arithmatex puts \( \) and \[ \] inside elements of class "arithmatex",
// and only those are typeset (dollar signs and code elsewhere stay text).
// Notebook pages (mkdocs-jupyter, div.jupyter-wrapper): Markdown cells use $...$ and $$...$$; code inputs and
// outputs (the code cells) are left alone.
(function () {
  const notebook = document.querySelector(".jupyter-wrapper") !== null;
  window.MathJax = {
    tex: {
      inlineMath: notebook ? [["$", "$"], ["\\(", "\\)"]] : [["\\(", "\\)"]],
      displayMath: notebook ? [["$$", "$$"], ["\\[", "\\]"]] : [["\\[", "\\]"]],
      processEscapes: true,
      processEnvironments: true,
    },
    options: notebook
      ? { ignoreHtmlClass: "jp-CodeCell|tex2jax_ignore" }
      : { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
    svg: { fontCache: "global" },
  };
})();
