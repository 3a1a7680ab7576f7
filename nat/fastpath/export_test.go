package fastpath

var ConvergeGap = convergeGap
