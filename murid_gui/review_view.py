from PySide6.QtWidgets import QWidget
class ReviewView(QWidget):
    def __init__(self, runner, parent=None):
        super().__init__(parent)
    def set_project(self, p): pass
    def restyle(self): pass
    def set_busy(self, b): pass
    def on_event(self, e): pass
    def job_finished(self, n, r): pass
    def save_current(self): pass
