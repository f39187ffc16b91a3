# cell: evaluate_accuracy
# item: 3
# fair: full
def evaluate_accuracy(net, data_iter, device):
    mode = net.training
    net.eval()
    hits = n = 0
    with torch.no_grad():
        for X, y in data_iter:
            X, y = X.to(device), y.to(device)
            hits += int((net(X).argmax(dim=1) == y).sum())
            n += len(y)
    net.train(mode)
    return hits / n
